"""Serving-side prediction: scikit-learn's labels and top-k scores, at a fraction of its cost.

`FastPredictor` computes exactly what the fitted TF-IDF vectorizer and linear classifier compute
(same terms, same weights, same sums in the same order), without scikit-learn's per-call
overhead: one text by a hand-written sparse dot product, a few texts by one gather and one
product for all of them, a batch by building the TF-IDF rows with C-level loops (`map` over the
vocabulary, scipy for the sums). A model with words and characters side by side (a
`FeatureUnion` of two vectorizers) gets each block's weights and norm as its own vectorizer
computes them. tests/algorithm/test_ml.py checks the labels and scores
against scikit-learn for every plan the training may choose.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from algorithm.ml.terms import feature_indices

if TYPE_CHECKING:
    from algorithm.ml.training import TrainedModel

# Up to this many texts a batch skips building the sparse matrix of `decisions`: one text gets
# its own dot product, 2 or more one product for the batch (`FastPredictor._few_decisions`).
# Measured on the bench's model, us of CPU per text (python -m loadtests.batch_cost): a dot
# product per text 30 at any size; the few-texts product 25 at 2, 14 at 8, 11.5 at 16, 10 at
# 20-26, 11 at 28; the sparse matrix 134 for one text, 16.4 at 20, 13.3 at 28, 12.1 at 32, 10
# at 64. Web's coalesced calls carry 18-27 texts.
FAST_BATCH_THRESHOLD = 28
# The few-texts product multiplies a dense (texts x their features) matrix by the gathered
# coefficients. Past this many multiply-adds OpenBLAS splits a product across its threads (its
# SMP threshold, 65536 x GEMM_MULTITHREAD_THRESHOLD 4), which costs a serving process more than
# it saves, and the dense matrix grows with the square of the batch: long texts are multiplied
# as a sparse matrix of the same entries instead (its row pointers counted, not sorted out of
# (row, column) pairs: 11.6-11.9 us a text at 30-32 bench texts against 14.0, 54.5 against 62.1
# for 16 texts twelve descriptions long).
SINGLE_THREAD_PRODUCT = 65_536 * 4
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

    def entries(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text, column, weight) of each feature of a few `texts`, unsorted, as in `features`."""
        counted = [Counter(self.indices(text)) for text in texts]
        for counts in counted:
            counts.pop(-1, None)
        lengths = list(map(len, counted))
        total = sum(lengths)
        columns = np.fromiter(chain.from_iterable(counted), dtype=np.intp, count=total)
        values = np.fromiter(
            chain.from_iterable(map(Counter.values, counted)), dtype=np.float64, count=total
        )
        rows = np.repeat(np.arange(len(texts)), lengths)
        self._weigh(values, columns, rows, len(texts))
        return rows, columns + self.offset if self.offset else columns, values

    def _weigh(self, values: np.ndarray, columns: np.ndarray, rows: np.ndarray, texts: int) -> None:
        """Turn term counts into TF-IDF weights in place, each text's normalised on its own."""
        if self.binary:
            values[:] = 1.0
        elif self.sublinear_tf:
            np.log(values, out=values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[columns]
        if self.norm is not None:
            magnitude = values * values if self.norm == "l2" else np.abs(values)
            norms = np.bincount(rows, weights=magnitude, minlength=texts)
            if self.norm == "l2":
                norms = np.sqrt(norms)
            values /= norms[rows]  # only texts with features are divided: their norms are > 0

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
        row_of_value = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))
        self._weigh(counts.data, counts.indices, row_of_value, len(texts))
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

    def _few_decisions(self, texts: Sequence[str]) -> np.ndarray:
        """`decisions` of a few texts: one coefficient gather and one product for all of them.

        Per text, numpy calls on arrays of a dozen values cost more than their arithmetic; here
        each step is one call for the whole batch. A text's row holds its own features' weights
        (zeros elsewhere), so the product sums each text's terms and nothing else.
        """
        found = [block.entries(texts) for block in self._blocks]
        if len(found) == 1:
            rows, columns, weights = found[0]
        else:  # each block normalised on its own, side by side, as FeatureUnion stacks them
            rows, columns, weights = (np.concatenate(parts) for parts in zip(*found, strict=True))
        entries = len(columns)
        if len(texts) * entries * len(self._intercept) > SINGLE_THREAD_PRODUCT:
            shape = (len(texts), self._coef_by_feature.shape[0])
            if len(found) == 1:  # rows already grouped by text: the row pointers are the counts
                pointers = np.zeros(len(texts) + 1, dtype=np.intp)
                np.cumsum(np.bincount(rows, minlength=len(texts)), out=pointers[1:])
                features = sp.csr_matrix((weights, columns, pointers), shape=shape)
            else:
                features = sp.csr_matrix((weights, (rows, columns)), shape=shape)
            return np.asarray(features @ self._coef_by_feature) + self._intercept
        by_text = np.zeros((len(texts), entries))
        by_text[rows, np.arange(entries)] = weights
        decisions = by_text @ self._coef_by_feature[columns]
        decisions += self._intercept
        return decisions

    def _batch_decisions(self, texts: Sequence[str]) -> np.ndarray:
        """Decision values of two texts or more, by the cheaper of the two batch paths."""
        if len(texts) <= FAST_BATCH_THRESHOLD:
            return self._few_decisions(texts)
        return self.decisions(texts)

    def predict_one(self, text: str) -> str:
        """Return the label for one text."""
        scores = self._scores(text)
        if scores.shape[0] == 1:  # binary: one score, positive means the second class
            return self._classes[1] if scores[0] > 0 else self._classes[0]
        return self._classes[int(np.argmax(scores))]

    def predict_many(self, texts: Sequence[str]) -> list[str]:
        """Return a label per text, building one sparse matrix for big batches."""
        if len(texts) <= 1:
            return [self.predict_one(text) for text in texts]
        decisions = self._batch_decisions(texts)
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
        if len(texts) == 1:
            decisions = self._scores(texts[0])[np.newaxis]
        else:
            decisions = self._batch_decisions(texts)
        return rank_top_k(decisions, self._classes, k)
