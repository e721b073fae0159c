"""The ML code: build, train, evaluate and predict with TF-IDF + a linear classifier.

A plain module (no web or queue imports) shared by the worker, which trains, and by the algorithm
service, which predicts; artifacts.py saves and loads the fitted model. Training picks its
settings for the data (`choose_plan`, candidates in algorithm/tuning.py) on the training rows,
never the holdout. `predict_labels` and `score_labels` are the reference predictions; the
service predicts with `algorithm.predictor.FastPredictor` (re-exported here), which gives exactly
their labels and scores at a fraction of scikit-learn's cost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from algorithm.evaluation import (
    HoldoutSplit,
    cross_validation_folds,
    holdout_skip_reason,
    score_predictions,
    scores_in_parts,
    split_holdout,
    stratified_parts,
)
from algorithm.predictor import FastPredictor as FastPredictor
from algorithm.predictor import rank_top_k
from algorithm.selection import (
    FIRST_ROUND_MARGIN,
    HOLDOUT_FRACTION,
    SECOND_ROUND_MARGIN,
    VALIDATION_PARTS,
    bar_setters,
    best_worth_its_cost,
    holdout_scale,
    plans_above_the_bar,
    split_margin,
)
from algorithm.tuning import (
    CROSS_VALIDATION_FOLDS,
    CROSS_VALIDATION_MAX_ROWS,
    DEFAULT_PLANS,
    LinearClassifier,
    TrainingPlan,
    Vectorizer,
    build_vectorizer,
    candidate_plans,
    default_plan,
    fit_classifier,
    quiet_fitting,
)

VALIDATION_FRACTION = 0.2


class TrainingDataError(ValueError):
    """The rows cannot train a classifier (none, or fewer than two labels)."""


@dataclass(frozen=True)
class TrainedModel:
    """A fitted vectorizer and the linear classifier trained on its output."""

    vectorizer: Vectorizer
    classifier: LinearClassifier

    @property
    def labels(self) -> list[str]:
        """The class names the classifier can answer, sorted."""
        return sorted(str(label) for label in self.classifier.classes_)


def check_training_data(labels: Sequence[str]) -> Counter[str]:
    """Return the label counts, or raise TrainingDataError when the rows cannot train a model."""
    if len(labels) == 0:
        raise TrainingDataError("no training data: add labelled rows with POST /api/data/ first")
    counts = Counter(labels)
    if len(counts) < 2:
        (only,) = counts
        raise TrainingDataError(f"need at least two labels to train, found 1: {only!r}")
    return counts


def _fit(texts: Sequence[str], labels: Sequence[str], plan: TrainingPlan) -> TrainedModel:
    vectorizer = build_vectorizer(plan)
    with quiet_fitting(one_blas_thread=plan.solver == "logreg"):
        classifier = fit_classifier(vectorizer.fit_transform(texts), labels, plan)
    return TrainedModel(vectorizer=vectorizer, classifier=classifier)


def validation_splits(labels: Sequence[str]) -> list[HoldoutSplit]:
    """Splits of the training rows to compare plans on: k folds on small data, else one."""
    if len(labels) > CROSS_VALIDATION_MAX_ROWS:
        split = split_holdout(labels, holdout_fraction=VALIDATION_FRACTION, seed=0)
        return [] if split is None else [split]
    return cross_validation_folds(labels, folds=CROSS_VALIDATION_FOLDS, seed=0)


def splits_again(labels: Sequence[str]) -> list[HoldoutSplit]:
    """The second round's folds: the same rows shuffled into folds with another seed."""
    return cross_validation_folds(labels, folds=CROSS_VALIDATION_FOLDS, seed=1)


def choose_plan(texts: Sequence[str], labels: Sequence[str]) -> TrainingPlan:
    """Pick the plan that beats scikit-learn's defaults on validation rows, if one clearly does.

    The bar is the better of the defaults (`LinearSVC()`, `LogisticRegression()` on
    `TfidfVectorizer()`; the first plan where they are not candidates) on EACH score: trading
    accuracy for macro-F1 (class weights do) is not an improvement a user asked for. On folds, a
    plan must clear it by more than the folds' noise, then again over five reshuffled folds more;
    on one validation split, by more than the noise of its rows scored in parts
    (`plans_above_the_bar`), and by more than the noise of the holdout the user compares on.
    Among those that do, the best accuracy + macro-F1 wins, with characters only if they also
    beat the best word plan by their price (`best_worth_its_cost`); if none does, `LinearSVC()`.
    """
    plans = candidates = candidate_plans(len(labels))
    splits = validation_splits(labels) if len(plans) > 1 else []
    if not splits:
        return default_plan(len(labels))
    defaults = np.array([plan in DEFAULT_PLANS for plan in plans])
    defaults[0] |= not defaults.any()
    margin = FIRST_ROUND_MARGIN if len(splits) > 1 else split_margin(len(labels))
    # One split has no other folds to show its noise: its own rows, scored in parts, do.
    in_parts = VALIDATION_PARTS if len(splits) == 1 and margin else 0
    accuracy, macro_f1, parts = fold_scores(texts, labels, plans, splits, parts=in_parts)
    validated = sum(len(split.holdout_rows) for split in splits) / len(splits)
    scale = holdout_scale(len(labels), validated / in_parts if in_parts else validated)
    above = plans_above_the_bar(
        accuracy, macro_f1, defaults, margin, parts=parts, holdout_scale=scale
    )
    if len(splits) > 1 and above.any():
        # A second round, reshuffled, for the finalists and the default(s) that set the bar.
        keep = above.copy()
        keep[list(bar_setters(accuracy, macro_f1, defaults))] = True
        finalists = [plan for plan, kept in zip(plans, keep, strict=True) if kept]
        more = fold_scores(texts, labels, finalists, splits_again(labels))
        both_accuracy = np.hstack([accuracy[keep], more[0]])
        both_macro_f1 = np.hstack([macro_f1[keep], more[1]])
        above_again = plans_above_the_bar(
            both_accuracy, both_macro_f1, defaults[keep], SECOND_ROUND_MARGIN, holdout_scale=scale
        )
        if above_again.any():
            plans, defaults, above = finalists, defaults[keep], above_again
            accuracy, macro_f1, margin = both_accuracy, both_macro_f1, SECOND_ROUND_MARGIN
        else:  # no finalist held: the defaults, on the first round's scores
            above[:] = False
    if len(splits) > 1:
        how = f"{accuracy.shape[1]}-fold cross-validation"
    elif in_parts:
        how = f"a 20 % validation split (its noise from {in_parts} stratified parts)"
    else:
        how = "a 20 % validation split"
    best = best_worth_its_cost(
        plans,
        above,
        accuracy,
        macro_f1,
        margin,
        defaults=defaults,
        parts=parts,
        holdout_scale=scale,
    )
    means = accuracy.mean(axis=1), macro_f1.mean(axis=1)
    validation = {
        "accuracy": round(float(means[0][best]), 4),
        "macro_f1": round(float(means[1][best]), 4),
        "bar_accuracy": round(float(means[0][defaults].max()), 4),
        "bar_macro_f1": round(float(means[1][defaults].max()), 4),
        "folds": accuracy.shape[1],
    }
    chosen_by = f"best of {len(candidates)} by {how} of the training rows"
    return replace(plans[best], chosen_by=chosen_by, validation=validation)


def fold_scores(
    texts: Sequence[str],
    labels: Sequence[str],
    plans: Sequence[TrainingPlan],
    splits: Sequence[HoldoutSplit],
    *,
    parts: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Each plan's accuracy and macro-F1 on each split's validation rows (plans x splits), and
    with `parts`, the same two on that many stratified parts of the (one) split's validation
    rows (2 x plans x parts), to measure their noise by."""
    fits = []
    for split in splits:
        fit_labels = [labels[i] for i in split.train_rows]
        expected = [labels[i] for i in split.holdout_rows]
        rows_in_parts = stratified_parts(expected, parts=parts, seed=0) if parts else []
        features: dict[tuple[int, int, bool, bool], tuple[Any, Any]] = {}  # shared vectorizers
        for plan in plans:
            key = (plan.ngram_max, plan.min_df, plan.sublinear_tf, plan.characters)
            if key not in features:
                vectorizer = build_vectorizer(plan)
                features[key] = (
                    vectorizer.fit_transform([texts[i] for i in split.train_rows]),
                    vectorizer.transform([texts[i] for i in split.holdout_rows]),
                )
            fits.append((plan, *features[key], fit_labels, expected, rows_in_parts))

    def score(
        plan: TrainingPlan, fit_on: Any, check: Any, fit_labels: Any, expected: Any, parts: Any
    ) -> Any:
        predicted = [
            str(label) for label in fit_classifier(fit_on, fit_labels, plan).predict(check)
        ]
        return scores_in_parts(expected, predicted, parts)

    # liblinear fits without the GIL: two threads use both cores. SGD (above 30 000 rows)
    # already fits on both cores, and two of its fits at once would double the peak memory.
    threads = 2 if plans[0].solver != "sgd" else 1
    with quiet_fitting(one_blas_thread=True), ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda fit: score(*fit), fits))
    # split x plan x (the whole split, then its parts) x (accuracy, macro-F1)
    scores = np.array(results).reshape(len(splits), len(plans), -1, 2)
    accuracy, macro_f1 = scores[:, :, 0].T
    return accuracy, macro_f1, np.moveaxis(scores[0, :, 1:], -1, 0) if parts else None


def fit_model(
    texts: Sequence[str], labels: Sequence[str], *, plan: TrainingPlan | None = None
) -> TrainedModel:
    """Fit a fresh pipeline on the given rows, with the given plan or one chosen for them."""
    return _fit(texts, labels, plan if plan is not None else choose_plan(texts, labels))


def train_model(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    holdout_fraction: float = HOLDOUT_FRACTION,
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
