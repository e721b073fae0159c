"""The ML code: build, train, evaluate and predict with TF-IDF + a linear classifier.

A plain module (no web or queue imports) shared by the worker, which trains, and by the algorithm
service, which predicts; artifacts.py saves and loads the fitted model. Training picks its
settings for the data (`choose_plan`, candidates in algorithm/tuning.py) on the training rows,
never the holdout. `FastPredictor` gives exactly the labels and top-k scores of `predict_labels` /
`score_labels` for one text at a small fraction of scikit-learn's per-call cost.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.svm import LinearSVC

from algorithm.evaluation import (
    HoldoutSplit,
    accuracy_and_macro_f1,
    cross_validation_folds,
    holdout_skip_reason,
    score_predictions,
    split_holdout,
)
from algorithm.tuning import (
    CROSS_VALIDATION_FOLDS,
    CROSS_VALIDATION_MAX_ROWS,
    TrainingPlan,
    candidate_plans,
    default_plan,
)

# Above this many texts one vectorized scikit-learn call beats the per-text loop (measured).
FAST_BATCH_THRESHOLD = 32
VALIDATION_FRACTION = 0.2

LinearClassifier: TypeAlias = SGDClassifier | LinearSVC


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
        ngram_range=(1, plan.ngram_max), sublinear_tf=True, min_df=plan.min_df, dtype=np.float64
    )


def build_classifier(plan: TrainingPlan) -> LinearClassifier:
    """Return an unfitted linear classifier for a plan (see algorithm/tuning.py)."""
    if plan.solver == "liblinear":
        return LinearSVC(C=plan.regularization, class_weight=plan.class_weight, random_state=0)
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
    with warnings.catch_warnings():
        # liblinear may stop at its iteration limit on a hard plan (high C, class weights); the
        # model it stops with is usable, and the validation scores judge it like any other.
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
    accuracy = np.zeros(len(candidates))
    macro_f1 = np.zeros(len(candidates))
    for split in splits:
        fit_texts = [texts[i] for i in split.train_rows]
        fit_labels = [labels[i] for i in split.train_rows]
        check_texts = [texts[i] for i in split.holdout_rows]
        expected = [labels[i] for i in split.holdout_rows]
        features: dict[tuple[int, int], tuple[Any, Any]] = {}  # plans share vectorizers
        for index, plan in enumerate(candidates):
            key = (plan.ngram_max, plan.min_df)
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
    # Leave the default only for a plan that validates at least as well on BOTH scores: trading
    # accuracy for macro-F1 (class weights do) is not an improvement a user asked for.
    eligible = (accuracy >= accuracy[0]) & (macro_f1 >= macro_f1[0])
    best = int(np.argmax(np.where(eligible, accuracy + macro_f1, -np.inf)))
    how = f"{len(splits)}-fold cross-validation" if len(splits) > 1 else "a 20 % validation split"
    chosen_by = (
        f"best of {len(candidates)} by {how} of the training rows "
        f"(accuracy {accuracy[best]:.4f}, macro-F1 {macro_f1[best]:.4f}; "
        f"default {accuracy[0]:.4f}, {macro_f1[0]:.4f})"
    )
    return TrainingPlan(**{**candidates[best].as_dict(), "chosen_by": chosen_by})


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


def _decisions_per_class(values: np.ndarray) -> np.ndarray:
    """Return one decision value per text and class; a binary s means classes [-s, s]."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, np.newaxis]
    return np.hstack([-values, values]) if values.shape[1] == 1 else values


def _top_k(decisions: np.ndarray, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The k best classes per row of decision values, with their softmax scores, best first."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    decisions = _decisions_per_class(decisions)
    shifted = np.exp(decisions - decisions.max(axis=1, keepdims=True))
    scores = shifted / shifted.sum(axis=1, keepdims=True)
    # Ranked by the decision values themselves (ties: class order, as argmax breaks them), so the
    # first label is always the predicted one, even where two softmax scores round equal.
    order = np.argsort(-decisions, axis=1, kind="stable")[:, :k]
    return [
        [(classes[index], float(row_scores[index])) for index in row_order]
        for row_order, row_scores in zip(order, scores, strict=True)
    ]


def score_labels(
    model: TrainedModel, texts: Sequence[str], k: int
) -> list[list[tuple[str, float]]]:
    """Return each text's k most likely labels with scores in [0, 1], best first (reference)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(texts) == 0:
        return []
    decisions = model.classifier.decision_function(model.vectorizer.transform(texts))
    return _top_k(decisions, [str(label) for label in model.classifier.classes_], k)


class FastPredictor:
    """Predicts one text with a hand-written sparse dot product, same labels as scikit-learn."""

    def __init__(self, model: TrainedModel) -> None:
        vectorizer, classifier = model.vectorizer, model.classifier
        self.model = model
        self._analyze = vectorizer.build_analyzer()  # identical tokenization by construction
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._binary = vectorizer.binary
        self._sublinear_tf = vectorizer.sublinear_tf
        self._norm = vectorizer.norm
        self._idf = vectorizer.idf_ if vectorizer.use_idf else None
        # Row j holds every class's weight for feature j: one contiguous gather per text.
        self._coef_by_feature = np.ascontiguousarray(classifier.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        self._classes = [str(label) for label in classifier.classes_]

    def _scores(self, text: str) -> np.ndarray:
        counts: Counter[int] = Counter()
        vocabulary = self._vocabulary
        for token in self._analyze(text):
            index = vocabulary.get(token)
            if index is not None:
                counts[index] += 1
        if not counts:
            return self._intercept
        indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self._binary:
            weights[:] = 1.0
        elif self._sublinear_tf:
            weights = np.log(weights) + 1.0
        if self._idf is not None:
            weights *= self._idf[indices]
        if self._norm == "l2":
            weights /= math.sqrt(float(weights @ weights))
        elif self._norm == "l1":
            weights /= float(np.abs(weights).sum())
        return weights @ self._coef_by_feature[indices] + self._intercept

    def predict_one(self, text: str) -> str:
        """Return the label for one text."""
        scores = self._scores(text)
        if scores.shape[0] == 1:  # binary: one score, positive means the second class
            return self._classes[1] if scores[0] > 0 else self._classes[0]
        return self._classes[int(np.argmax(scores))]

    def top_k(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Return each text's k most likely labels with scores, as `score_labels` does."""
        if len(texts) > FAST_BATCH_THRESHOLD or len(texts) == 0:
            return score_labels(self.model, texts, k)
        return _top_k(np.vstack([self._scores(text) for text in texts]), self._classes, k)

    def predict_many(self, texts: Sequence[str]) -> list[str]:
        """Return a label per text, switching to scikit-learn's vectorized path for big batches."""
        if len(texts) > FAST_BATCH_THRESHOLD:
            return predict_labels(self.model, texts)
        return [self.predict_one(text) for text in texts]
