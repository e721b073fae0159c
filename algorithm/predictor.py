"""Serving-side prediction: scikit-learn's labels and top-k scores, at a fraction of its cost.

`FastPredictor` computes exactly what the fitted TF-IDF vectorizer and linear classifier compute
(same terms, same weights, same sums in the same order), without scikit-learn's per-call
overhead: one text by a hand-written sparse dot product, a batch by building the TF-IDF rows
with C-level loops (`map` over the vocabulary, scipy for the sums). tests/algorithm/test_ml.py
checks the labels and scores against scikit-learn for every solver the training may choose.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

if TYPE_CHECKING:
    from algorithm.ml import TrainedModel

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


def term_extractor(vectorizer: TfidfVectorizer) -> Callable[[str], Iterable[str]]:
    """The vectorizer's terms of a text (as a multiset), built faster for plain word n-grams."""
    plain_words = (
        vectorizer.analyzer == "word"
        and vectorizer.stop_words is None
        and vectorizer.preprocessor is None
        and vectorizer.tokenizer is None
        and vectorizer.input == "content"
    )
    if not plain_words:
        analyze: Callable[[str], Iterable[str]] = vectorizer.build_analyzer()
        return analyze
    preprocess, tokenize = vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
    min_n, max_n = vectorizer.ngram_range
    join = " ".join

    def terms(text: str) -> Iterable[str]:
        # scikit-learn's word n-grams, joined by C-level maps instead of a slicing loop; the
        # shifted copies are shorter, so zip stops at the last whole n-gram.
        words = tokenize(preprocess(text))
        grams = (
            map(join, zip(*(words[i:] for i in range(n)), strict=False))
            for n in range(max(min_n, 2), max_n + 1)
        )
        return chain(words if min_n == 1 else (), *grams)

    return terms


class FastPredictor:
    """Predicts with hand-written TF-IDF and dot products; same labels as scikit-learn."""

    def __init__(self, model: TrainedModel) -> None:
        vectorizer, classifier = model.vectorizer, model.classifier
        self.model = model
        self._terms = term_extractor(vectorizer)
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._feature_count = len(self._vocabulary)
        self._binary = vectorizer.binary
        self._sublinear_tf = vectorizer.sublinear_tf
        self._norm = vectorizer.norm
        self._idf = vectorizer.idf_ if vectorizer.use_idf else None
        # Row j holds every class's weight for feature j: one contiguous gather per text, and
        # the layout scikit-learn's own `X @ coef_.T` multiplies by.
        self._coef_by_feature = np.ascontiguousarray(classifier.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        self._classes = [str(label) for label in classifier.classes_]

    def _scores(self, text: str) -> np.ndarray:
        counts: Counter[int] = Counter()
        vocabulary = self._vocabulary
        for term in self._terms(text):
            index = vocabulary.get(term)
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

    def _features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The TF-IDF rows of `texts`, as the vectorizer's `transform` builds them."""
        found: list[int] = []
        ends = [0]
        lookup = self._vocabulary.get
        for text in texts:
            found.extend(map(lookup, self._terms(text), repeat(-1)))  # -1: not a feature
            ends.append(len(found))
        terms = np.fromiter(found, dtype=np.intp, count=len(found))
        rows = np.repeat(np.arange(len(texts)), np.diff(ends))
        known = terms >= 0
        counts = sp.csr_matrix(
            (np.ones(int(known.sum())), (rows[known], terms[known])),
            shape=(len(texts), self._feature_count),
        )
        counts.sum_duplicates()  # one entry per feature, indices sorted, as scikit-learn's
        values = counts.data
        if self._binary:
            values[:] = 1.0
        elif self._sublinear_tf:
            np.log(values, out=values)
            values += 1.0
        if self._idf is not None:
            values *= self._idf[counts.indices]
        if self._norm is not None:
            row_of_value = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))
            magnitude = values * values if self._norm == "l2" else np.abs(values)
            norms = np.bincount(row_of_value, weights=magnitude, minlength=len(texts))
            if self._norm == "l2":
                norms = np.sqrt(norms)
            norms[norms == 0.0] = 1.0  # a text without features keeps its zeros
            values /= norms[row_of_value]
        return counts

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
