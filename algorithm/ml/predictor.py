"""Serving-side prediction: scikit-learn's labels and top-k scores, at a fraction of its cost.

`FastPredictor` computes exactly what the fitted TF-IDF vectorizer and linear classifier compute
(same terms, same weights, same sums in the same order), without scikit-learn's per-call
overhead: one text by a hand-written sparse dot product, a batch by building the TF-IDF rows
with C-level loops (`map` over the vocabulary, scipy for the sums). A model with words and
characters side by side (a `FeatureUnion` of two vectorizers) gets each block's weights and norm
as its own vectorizer computes them. tests/algorithm/test_ml.py checks the labels and scores
against scikit-learn for every plan the training may choose.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from algorithm.ml.terms import feature_indices

if TYPE_CHECKING:
    from algorithm.ml.training import TrainedModel

# Up to this many texts the per-text dot product beats building one sparse matrix (measured:
# 28 us per text either way at 16 texts, 21 against 28 at 32, 134 against 28 for one text).
FAST_BATCH_THRESHOLD = 16
Ranked = list[tuple[str, float]]


def _decisions_per_class(values: np.ndarray) -> np.ndarray:
    """Return one decision value per text and class; a binary s means classes [-s, s]."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, np.newaxis]
    return np.hstack([-values, values]) if values.shape[1] == 1 else values


def rank_top_k(decisions: np.ndarray, classes: Sequence[str], k: int) -> list[Ranked]:
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


def feature_blocks(vectorizer: object) -> list[TfidfVectorizer]:
    """The vectorizers whose outputs, side by side, are a model's features (unchecked)."""
    if not isinstance(vectorizer, FeatureUnion):
        return [vectorizer]
    if vectorizer.transformer_weights:
        raise ValueError("weighted feature unions are not supported")
    return [part for _, part in vectorizer.transformer_list]


class _TfidfBlock:
    """One fitted vectorizer's TF-IDF weights, its columns starting at `offset`."""

    def __init__(self, vectorizer: TfidfVectorizer, offset: int) -> None:
        self.indices = feature_indices(vectorizer)
        self.size = len(vectorizer.vocabulary_)
        self.offset = offset
        self.binary = vectorizer.binary
        self.sublinear_tf = vectorizer.sublinear_tf
        self.norm = vectorizer.norm
        self.idf = vectorizer.idf_ if vectorizer.use_idf else None

    def weights(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The columns and weights of one text's features (None: it has none)."""
        counts = Counter(self.indices(text))  # counted in C, not a Python loop over ~150 terms
        counts.pop(-1, None)
        if not counts:
            return None
        indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.binary:
            weights[:] = 1.0
        elif self.sublinear_tf:
            weights = np.log(weights) + 1.0
        if self.idf is not None:
            weights *= self.idf[indices]
        if self.norm == "l2":
            weights /= math.sqrt(float(weights @ weights))
        elif self.norm == "l1":
            weights /= float(np.abs(weights).sum())
        return indices + self.offset if self.offset else indices, weights

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The TF-IDF rows of `texts`, as the vectorizer's `transform` builds them."""
        found: list[int] = []
        ends = [0]
        for text in texts:
            found.extend(self.indices(text))  # -1: not a feature
            ends.append(len(found))
        terms = np.fromiter(found, dtype=np.intp, count=len(found))
        rows = np.repeat(np.arange(len(texts)), np.diff(ends))
        known = terms >= 0
        counts = sp.csr_matrix(
            (np.ones(int(known.sum())), (rows[known], terms[known])),
            shape=(len(texts), self.size),
        )
        counts.sum_duplicates()  # one entry per feature, indices sorted, as scikit-learn's
        values = counts.data
        if self.binary:
            values[:] = 1.0
        elif self.sublinear_tf:
            np.log(values, out=values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[counts.indices]
        if self.norm is not None:
            row_of_value = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))
            magnitude = values * values if self.norm == "l2" else np.abs(values)
            norms = np.bincount(row_of_value, weights=magnitude, minlength=len(texts))
            if self.norm == "l2":
                norms = np.sqrt(norms)
            norms[norms == 0.0] = 1.0  # a text without features keeps its zeros
            values /= norms[row_of_value]
        return counts


class FastPredictor:
    """Predicts with hand-written TF-IDF and dot products; same labels as scikit-learn."""

    def __init__(self, model: TrainedModel) -> None:
        classifier = model.classifier
        self.model = model
        self._blocks: list[_TfidfBlock] = []
        offset = 0
        for vectorizer in feature_blocks(model.vectorizer):
            self._blocks.append(_TfidfBlock(vectorizer, offset))
            offset += self._blocks[-1].size
        # Row j holds every class's weight for feature j: one contiguous gather per text, and
        # the layout scikit-learn's own `X @ coef_.T` multiplies by.
        self._coef_by_feature = np.ascontiguousarray(classifier.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        self._classes = [str(label) for label in classifier.classes_]

    def _scores(self, text: str) -> np.ndarray:
        found = [columns for block in self._blocks if (columns := block.weights(text))]
        if not found:
            return self._intercept
        if len(found) == 1:
            indices, weights = found[0]
        else:  # each block normalised on its own, side by side, as FeatureUnion stacks them
            indices = np.concatenate([indices for indices, _ in found])
            weights = np.concatenate([weights for _, weights in found])
        return weights @ self._coef_by_feature[indices] + self._intercept

    def _features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The rows of features of `texts`, as the fitted vectorizer's `transform` builds them."""
        if len(self._blocks) == 1:
            return self._blocks[0].features(texts)
        return sp.hstack([block.features(texts) for block in self._blocks], format="csr")

    def decisions(self, texts: Sequence[str]) -> np.ndarray:
        """The classifier's decision values for a batch (one column for a binary model)."""
        return np.asarray(self._features(texts) @ self._coef_by_feature) + self._intercept

    def predict_one(self, text: str) -> str:
        """Return the label for one text."""
        scores = self._scores(text)
        if scores.shape[0] == 1:  # binary: one score, positive means the second class
            return self._classes[1] if scores[0] > 0 else self._classes[0]
        return self._classes[int(np.argmax(scores))]

    def predict_many(self, texts: Sequence[str]) -> list[str]:
        """Return a label per text, building one sparse matrix for big batches."""
        if len(texts) <= FAST_BATCH_THRESHOLD:
            return [self.predict_one(text) for text in texts]
        decisions = self.decisions(texts)
        if decisions.shape[1] == 1:
            chosen = (decisions[:, 0] > 0).astype(np.intp)
        else:
            chosen = decisions.argmax(axis=1)
        classes = self._classes
        return [classes[index] for index in chosen.tolist()]

    def top_k(self, texts: Sequence[str], k: int) -> list[Ranked]:
        """Return each text's k most likely labels with scores, as `ml.score_labels` does."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(texts) == 0:
            return []
        if len(texts) <= FAST_BATCH_THRESHOLD:
            decisions = np.vstack([self._scores(text) for text in texts])
        else:
            decisions = self.decisions(texts)
        return rank_top_k(decisions, self._classes, k)
