"""The ML code: build, train, evaluate and predict with TF-IDF + a linear classifier.

A plain module (no web or queue imports) shared by the worker, which trains, and by the algorithm
service, which predicts; artifacts.py saves and loads the fitted model. `FastPredictor` gives
exactly the labels of `predict_labels` for one text at a small fraction of scikit-learn's cost.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

# Above this many texts one vectorized scikit-learn call beats the per-text loop (measured).
FAST_BATCH_THRESHOLD = 32


class TrainingDataError(ValueError):
    """The rows cannot train a classifier (none, or fewer than two labels)."""


@dataclass(frozen=True)
class TrainedModel:
    """A fitted vectorizer and the linear classifier trained on its output."""

    vectorizer: TfidfVectorizer
    classifier: SGDClassifier

    @property
    def labels(self) -> list[str]:
        """The class names the classifier can answer, sorted."""
        return sorted(str(label) for label in self.classifier.classes_)


def build_pipeline() -> tuple[TfidfVectorizer, SGDClassifier]:
    """Return an unfitted vectorizer and classifier, as chosen in docs/classifier.md."""
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        # min_df=2 drops one-off tokens (ids, typos): a much smaller model at no cost in accuracy.
        min_df=2,
        dtype=np.float64,
    )
    # As accurate as LinearSVC here at a fraction of the fit time, and it uses both cores
    # (one-vs-rest in threads): a million rows train in minutes, not tens of minutes.
    classifier = SGDClassifier(loss="modified_huber", alpha=2e-5, n_jobs=2, random_state=0)
    return vectorizer, classifier


def check_training_data(labels: Sequence[str]) -> Counter[str]:
    """Return the label counts, or raise TrainingDataError when the rows cannot train a model."""
    if len(labels) == 0:
        raise TrainingDataError("no training data: add labelled rows with POST /api/data/ first")
    counts = Counter(labels)
    if len(counts) < 2:
        (only,) = counts
        raise TrainingDataError(f"need at least two labels to train, found 1: {only!r}")
    return counts


def fit_model(texts: Sequence[str], labels: Sequence[str]) -> TrainedModel:
    """Fit a fresh pipeline on the given rows."""
    vectorizer, classifier = build_pipeline()
    features = vectorizer.fit_transform(texts)
    classifier.fit(features, np.asarray(labels, dtype=object))
    # scikit-learn multiplies by coef_.T; unless that is C-contiguous scipy copies the whole
    # matrix on every predict call (milliseconds per text for SGDClassifier's C-ordered coef_).
    classifier.coef_ = np.asfortranarray(classifier.coef_)
    return TrainedModel(vectorizer=vectorizer, classifier=classifier)


def holdout_skip_reason(counts: Counter[str], holdout_fraction: float) -> str | None:
    """Say why a stratified holdout is impossible for these label counts, or None if it works."""
    rows = sum(counts.values())
    holdout_rows = math.ceil(rows * holdout_fraction)
    smallest_label, smallest = min(counts.items(), key=lambda item: item[1])
    if smallest < 2:
        return f"label {smallest_label!r} has only {smallest} row; a holdout needs 2 per label"
    if holdout_rows < len(counts) or rows - holdout_rows < len(counts):
        return f"{rows} rows are too few for a stratified holdout of {len(counts)} labels"
    return None


def train_model(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Evaluate on a stratified holdout, then refit on all rows; return the model and metrics."""
    if len(texts) != len(labels):
        raise TrainingDataError(f"{len(texts)} texts but {len(labels)} labels")
    counts = check_training_data(labels)
    reason = holdout_skip_reason(counts, holdout_fraction)
    metrics: dict[str, Any]
    if reason is not None:
        metrics = {"holdout": False, "reason": reason, "accuracy": None, "macro_f1": None}
    else:
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)),
            test_size=holdout_fraction,
            stratify=np.asarray(labels, dtype=object),
            random_state=seed,
        )
        evaluated = fit_model([texts[i] for i in train_idx], [labels[i] for i in train_idx])
        expected = [labels[i] for i in test_idx]
        predicted = predict_labels(evaluated, [texts[i] for i in test_idx])
        metrics = {
            "holdout": True,
            "accuracy": float(accuracy_score(expected, predicted)),
            "macro_f1": float(f1_score(expected, predicted, average="macro", zero_division=0)),
            "holdout_rows": len(test_idx),
        }
        del evaluated  # free its memory before the full refit
    started = time.perf_counter()
    model = fit_model(texts, labels)
    metrics["train_rows"] = len(labels)
    metrics["fit_seconds"] = round(time.perf_counter() - started, 3)
    return model, metrics


def predict_labels(model: TrainedModel, texts: Sequence[str]) -> list[str]:
    """Predict a label per text with scikit-learn's batch path (the reference implementation)."""
    if len(texts) == 0:
        return []
    return [str(label) for label in model.classifier.predict(model.vectorizer.transform(texts))]


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

    def predict_many(self, texts: Sequence[str]) -> list[str]:
        """Return a label per text, switching to scikit-learn's vectorized path for big batches."""
        if len(texts) > FAST_BATCH_THRESHOLD:
            return predict_labels(self.model, texts)
        return [self.predict_one(text) for text in texts]
