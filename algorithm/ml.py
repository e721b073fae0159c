"""The ML code: build, train, evaluate and predict with TF-IDF + a linear classifier.

A plain module (no web or queue imports) shared by the worker, which trains, and by the algorithm
service, which predicts; artifacts.py saves and loads the fitted model. Training picks its
settings for the data (`choose_plan`, candidates in algorithm/tuning.py) on the training rows,
never the holdout. `predict_labels` and `score_labels` are the reference predictions; the
service predicts with `algorithm.predictor.FastPredictor` (re-exported here), which gives exactly
their labels and scores at a fraction of scikit-learn's cost.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from algorithm.evaluation import (
    HoldoutSplit,
    accuracy_and_macro_f1,
    cross_validation_folds,
    holdout_skip_reason,
    score_predictions,
    split_holdout,
)
from algorithm.predictor import FastPredictor as FastPredictor
from algorithm.predictor import rank_top_k
from algorithm.tuning import (
    CROSS_VALIDATION_FOLDS,
    CROSS_VALIDATION_MAX_ROWS,
    DEFAULT_PLANS,
    TrainingPlan,
    candidate_plans,
    default_plan,
)

VALIDATION_FRACTION = 0.2

LinearClassifier: TypeAlias = SGDClassifier | LinearSVC | LogisticRegression


class TrainingDataError(ValueError):
    """The rows cannot train a classifier (none, or fewer than two labels)."""


@dataclass(frozen=True)
class TrainedModel:
    """A fitted vectorizer and the linear classifier trained on its output."""

    vectorizer: TfidfVectorizer
    classifier: LinearClassifier

    @property
    def labels(self) -> list[str]:
        """The class names the classifier can answer, sorted."""
        return sorted(str(label) for label in self.classifier.classes_)


def build_vectorizer(plan: TrainingPlan) -> TfidfVectorizer:
    """Return an unfitted vectorizer for a plan (see algorithm/tuning.py)."""
    return TfidfVectorizer(
        ngram_range=(1, plan.ngram_max),
        sublinear_tf=plan.sublinear_tf,
        min_df=plan.min_df,
        dtype=np.float64,
    )


def build_classifier(plan: TrainingPlan) -> LinearClassifier:
    """Return an unfitted linear classifier for a plan (see algorithm/tuning.py)."""
    if plan.solver == "liblinear":
        return LinearSVC(C=plan.regularization, class_weight=plan.class_weight, random_state=0)
    if plan.solver == "logreg":
        return LogisticRegression(C=plan.regularization, class_weight=plan.class_weight)
    return SGDClassifier(
        loss="modified_huber",
        alpha=plan.regularization,
        class_weight=plan.class_weight,
        n_jobs=2,  # one-vs-rest in threads: both cores
        random_state=0,
    )


def check_training_data(labels: Sequence[str]) -> Counter[str]:
    """Return the label counts, or raise TrainingDataError when the rows cannot train a model."""
    if len(labels) == 0:
        raise TrainingDataError("no training data: add labelled rows with POST /api/data/ first")
    counts = Counter(labels)
    if len(counts) < 2:
        (only,) = counts
        raise TrainingDataError(f"need at least two labels to train, found 1: {only!r}")
    return counts


def _fit_classifier(features: Any, labels: Sequence[str], plan: TrainingPlan) -> LinearClassifier:
    classifier = build_classifier(plan)
    # lbfgs's dense products are small: with the default BLAS threads on a busy 2-core machine
    # they spin against each other (measured: 14 s wall, 4.2 s CPU for 800 rows, 40 labels;
    # one thread: 2.9 s wall, 0.6 s CPU). The other solvers do not use BLAS threads.
    one_blas_thread = (
        threadpool_limits(limits=1, user_api="blas")
        if plan.solver == "logreg"
        else contextlib.nullcontext()
    )
    with warnings.catch_warnings(), one_blas_thread:
        # liblinear and lbfgs may stop at their iteration limit on a hard plan (high C, class
        # weights); the model they stop with is usable, and validation judges it like any other.
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(features, np.asarray(labels, dtype=object))
    # scikit-learn multiplies by coef_.T; unless that is C-contiguous scipy copies the whole
    # matrix on every predict call (milliseconds per text for SGDClassifier's C-ordered coef_).
    classifier.coef_ = np.asfortranarray(classifier.coef_)
    return classifier


def _fit(texts: Sequence[str], labels: Sequence[str], plan: TrainingPlan) -> TrainedModel:
    vectorizer = build_vectorizer(plan)
    classifier = _fit_classifier(vectorizer.fit_transform(texts), labels, plan)
    return TrainedModel(vectorizer=vectorizer, classifier=classifier)


def validation_splits(labels: Sequence[str]) -> list[HoldoutSplit]:
    """Splits of the training rows to compare plans on: k folds on small data, else one."""
    if len(labels) > CROSS_VALIDATION_MAX_ROWS:
        split = split_holdout(labels, holdout_fraction=VALIDATION_FRACTION, seed=0)
        return [] if split is None else [split]
    return cross_validation_folds(labels, folds=CROSS_VALIDATION_FOLDS, seed=0)


def choose_plan(texts: Sequence[str], labels: Sequence[str]) -> TrainingPlan:
    """Pick the candidate plan with the best accuracy + macro-F1 on validation rows."""
    candidates = candidate_plans(len(labels))
    splits = validation_splits(labels) if len(candidates) > 1 else []
    if not splits:
        return default_plan(len(labels))
    accuracy, macro_f1 = validation_scores(texts, labels, candidates, splits)
    # The bar is the better of scikit-learn's own lines on EACH score (the first plan where they
    # are not candidates). Only a plan at or above it on both scores may be chosen: trading
    # accuracy for macro-F1 (class weights do) is not an improvement a user asked for.
    defaults = np.array([plan in DEFAULT_PLANS for plan in candidates])
    if not defaults.any():
        defaults[0] = True
    bar = (accuracy[defaults].max(), macro_f1[defaults].max())
    eligible = (accuracy >= bar[0]) & (macro_f1 >= bar[1])
    # No plan clears the bar when the defaults split the two scores: the first plan then.
    best = int(np.argmax(np.where(eligible, accuracy + macro_f1, -np.inf))) if eligible.any() else 0
    how = f"{len(splits)}-fold cross-validation" if len(splits) > 1 else "a 20 % validation split"
    validation = {
        "accuracy": round(float(accuracy[best]), 4),
        "macro_f1": round(float(macro_f1[best]), 4),
        "bar_accuracy": round(float(bar[0]), 4),
        "bar_macro_f1": round(float(bar[1]), 4),
    }
    chosen_by = f"best of {len(candidates)} by {how} of the training rows"
    return replace(candidates[best], chosen_by=chosen_by, validation=validation)


def validation_scores(
    texts: Sequence[str],
    labels: Sequence[str],
    candidates: Sequence[TrainingPlan],
    splits: Sequence[HoldoutSplit],
) -> tuple[np.ndarray, np.ndarray]:
    """Each plan's accuracy and macro-F1 on the validation rows, averaged over the splits."""
    accuracy = np.zeros(len(candidates))
    macro_f1 = np.zeros(len(candidates))
    for split in splits:
        fit_texts = [texts[i] for i in split.train_rows]
        fit_labels = [labels[i] for i in split.train_rows]
        check_texts = [texts[i] for i in split.holdout_rows]
        expected = [labels[i] for i in split.holdout_rows]
        features: dict[tuple[int, int, bool], tuple[Any, Any]] = {}  # plans share vectorizers
        for index, plan in enumerate(candidates):
            key = (plan.ngram_max, plan.min_df, plan.sublinear_tf)
            if key not in features:
                vectorizer = build_vectorizer(plan)
                features[key] = (
                    vectorizer.fit_transform(fit_texts),
                    vectorizer.transform(check_texts),
                )
            fit_features, check_features = features[key]
            classifier = _fit_classifier(fit_features, fit_labels, plan)
            predicted = [str(label) for label in classifier.predict(check_features)]
            split_accuracy, split_macro_f1 = accuracy_and_macro_f1(expected, predicted)
            accuracy[index] += split_accuracy / len(splits)
            macro_f1[index] += split_macro_f1 / len(splits)
    return accuracy, macro_f1


def fit_model(
    texts: Sequence[str], labels: Sequence[str], *, plan: TrainingPlan | None = None
) -> TrainedModel:
    """Fit a fresh pipeline on the given rows, with the given plan or one chosen for them."""
    return _fit(texts, labels, plan if plan is not None else choose_plan(texts, labels))


def train_model(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    on_holdout: Callable[[Sequence[int], list[str]], None] | None = None,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Evaluate on a stratified holdout, then refit on all rows; return the model and metrics.

    `on_holdout`, if given, receives the held-out row indices and what the model trained without
    them predicted for them (the promotion gate scores the champion on the same rows).
    """
    if len(texts) != len(labels):
        raise TrainingDataError(f"{len(texts)} texts but {len(labels)} labels")
    counts = check_training_data(labels)
    split = split_holdout(labels, holdout_fraction=holdout_fraction, seed=seed)
    metrics: dict[str, Any]
    if split is None:
        plan = choose_plan(texts, labels)
        reason = holdout_skip_reason(counts, holdout_fraction)
        metrics = {"holdout": False, "reason": reason, "accuracy": None, "macro_f1": None}
    else:
        train_labels = [labels[i] for i in split.train_rows]
        train_texts = [texts[i] for i in split.train_rows]
        # The plan is chosen on the training rows only, so the holdout scores stay honest.
        plan = choose_plan(train_texts, train_labels)
        evaluated = _fit(train_texts, train_labels, plan)
        del train_texts, train_labels
        predicted = predict_labels(evaluated, [texts[i] for i in split.holdout_rows])
        if on_holdout is not None:
            on_holdout([int(i) for i in split.holdout_rows], predicted)
        metrics = {
            "holdout": True,
            **score_predictions([labels[i] for i in split.holdout_rows], predicted),
            "holdout_rows": len(split.holdout_rows),
            "excluded_labels": split.excluded_labels,
            "excluded_rows": sum(split.excluded_labels.values()),
        }
        del evaluated  # free its memory before the full refit
    started = time.perf_counter()
    model = _fit(texts, labels, plan)  # the final model learns from every row
    metrics["training"] = plan.as_dict()
    metrics["train_rows"] = len(labels)
    metrics["fit_seconds"] = round(time.perf_counter() - started, 3)
    return model, metrics


def predict_labels(model: TrainedModel, texts: Sequence[str]) -> list[str]:
    """Predict a label per text with scikit-learn's batch path (the reference implementation)."""
    if len(texts) == 0:
        return []
    return [str(label) for label in model.classifier.predict(model.vectorizer.transform(texts))]


def score_labels(
    model: TrainedModel, texts: Sequence[str], k: int
) -> list[list[tuple[str, float]]]:
    """Return each text's k most likely labels with scores in [0, 1], best first (reference)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(texts) == 0:
        return []
    decisions = model.classifier.decision_function(model.vectorizer.transform(texts))
    return rank_top_k(decisions, [str(label) for label in model.classifier.classes_], k)
