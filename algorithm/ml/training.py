"""The ML code: build, train, evaluate and predict with TF-IDF + a linear classifier.

A plain module (no web or queue imports) shared by the worker, which trains, and by the algorithm
service, which predicts; artifacts.py saves and loads the fitted model. Training picks its
settings for the data on the training rows, never the holdout (`algorithm.ml.search.choose_plan`,
candidates in algorithm/ml/tuning.py). `predict_labels` and `score_labels` are the reference
predictions; the service predicts with `algorithm.ml.predictor.FastPredictor` (re-exported here),
which gives exactly their labels and scores at a fraction of scikit-learn's cost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from algorithm.ml.evaluation import holdout_skip_reason, score_predictions, split_holdout
from algorithm.ml.predictor import FastPredictor as FastPredictor
from algorithm.ml.predictor import rank_top_k
from algorithm.ml.search import choose_plan
from algorithm.ml.selection import HOLDOUT_FRACTION
from algorithm.ml.tuning import (
    LinearClassifier,
    TrainingPlan,
    Vectorizer,
    build_vectorizer,
    fit_classifier,
    quiet_fitting,
)


class TrainingDataError(ValueError):
    """The rows cannot train a classifier (none, fewer than two labels, or too many)."""


# One-vs-rest linear classifiers hold a dense row of weights per label (labels x features
# float64) and fit one binary problem per label: memory, fitting time, the pickle and every
# prediction grow with the labels (measured, LinearSVC on 20 000 rows of 2 156 features: 10
# labels 1.0 s of CPU, 1 000 labels 18.9 s and 16 MiB of weights; a large corpus has many
# times the features). A thousand covers the taxonomies such a service classifies into; far
# beyond it the fit runs out of memory or time instead of failing with a reason.
DEFAULT_MAX_LABELS = 1000


def too_many_labels(found: int, max_labels: int) -> TrainingDataError:
    """The error for rows with more distinct labels than the limit allows."""
    return TrainingDataError(
        f"the rows have {found} distinct labels, more than the limit of {max_labels} "
        "(MAX_LABELS): merge or remove labels, or raise MAX_LABELS if the worker has the memory"
    )


@dataclass(frozen=True)
class TrainedModel:
    """A fitted vectorizer and the linear classifier trained on its output."""

    vectorizer: Vectorizer
    classifier: LinearClassifier

    @property
    def labels(self) -> list[str]:
        """The class names the classifier can answer, sorted."""
        return sorted(str(label) for label in self.classifier.classes_)


def check_training_data(
    labels: Sequence[str], *, max_labels: int = DEFAULT_MAX_LABELS
) -> Counter[str]:
    """Return the label counts, or raise TrainingDataError when the rows cannot train a model."""
    if len(labels) == 0:
        raise TrainingDataError("no training data: add labelled rows with POST /api/data/ first")
    counts = Counter(labels)
    if len(counts) < 2:
        (only,) = counts
        raise TrainingDataError(f"need at least two labels to train, found 1: {only!r}")
    if len(counts) > max_labels:
        raise too_many_labels(len(counts), max_labels)
    return counts


def _fit(texts: Sequence[str], labels: Sequence[str], plan: TrainingPlan) -> TrainedModel:
    vectorizer = build_vectorizer(plan)
    with quiet_fitting(one_blas_thread=plan.solver == "logreg"):
        classifier = fit_classifier(vectorizer.fit_transform(texts), labels, plan)
    return TrainedModel(vectorizer=vectorizer, classifier=classifier)


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
    max_labels: int = DEFAULT_MAX_LABELS,
    on_holdout: Callable[[Sequence[int], list[str]], None] | None = None,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Evaluate on a stratified holdout, then refit on all rows; return the model and metrics.

    `on_holdout`, if given, receives the held-out row indices and what the model trained without
    them predicted for them (the promotion gate scores the champion on the same rows). More
    than `max_labels` distinct labels is a TrainingDataError, raised before anything is fitted.
    """
    if len(texts) != len(labels):
        raise TrainingDataError(f"{len(texts)} texts but {len(labels)} labels")
    counts = check_training_data(labels, max_labels=max_labels)
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
