"""Holdout splits and scores that survive real data: rare labels train but are not held out.

A stratified split needs two rows of a label, one on each side. Real tables have labels with a
single row; rather than give up on evaluating the whole run, `split_holdout` keeps such labels in
the training rows only and says which they were, and the scores cover the labels it could hold out.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, train_test_split

MIN_ROWS_TO_EVALUATE = 2


@dataclass(frozen=True)
class HoldoutSplit:
    """Row indices to train on and to hold out; labels too small to hold out only train."""

    train_rows: np.ndarray
    holdout_rows: np.ndarray
    excluded_labels: dict[str, int]  # label -> its row count: labels with no holdout row


def holdout_skip_reason(counts: Counter[str], holdout_fraction: float) -> str | None:
    """Say why no stratified holdout is possible for these label counts, or None if one is."""
    evaluable = {label: n for label, n in counts.items() if n >= MIN_ROWS_TO_EVALUATE}
    if not evaluable:
        return f"no label has {MIN_ROWS_TO_EVALUATE} rows; a holdout needs 2 rows of a label"
    rows = sum(evaluable.values())
    holdout_rows = math.ceil(rows * holdout_fraction)
    if holdout_rows < len(evaluable) or rows - holdout_rows < len(evaluable):
        return f"{rows} rows are too few for a stratified holdout of {len(evaluable)} labels"
    return None


def split_holdout(
    labels: Sequence[str], *, holdout_fraction: float, seed: int
) -> HoldoutSplit | None:
    """Split rows stratified by label, keeping labels with too few rows out of the holdout."""
    counts = Counter(labels)
    if holdout_skip_reason(counts, holdout_fraction) is not None:
        return None
    label_array = np.asarray(labels, dtype=object)
    evaluable = np.fromiter((counts[label] >= MIN_ROWS_TO_EVALUATE for label in labels), bool)
    train_rows, holdout_rows = train_test_split(
        np.flatnonzero(evaluable),
        test_size=holdout_fraction,
        stratify=label_array[evaluable],
        random_state=seed,
    )
    # A label of two or three rows may still get no holdout row from the stratified rounding.
    held_out = set(label_array[holdout_rows])
    excluded = {label: n for label, n in sorted(counts.items()) if label not in held_out}
    return HoldoutSplit(
        train_rows=np.sort(np.concatenate([train_rows, np.flatnonzero(~evaluable)])),
        holdout_rows=np.sort(holdout_rows),
        excluded_labels=excluded,
    )


def cross_validation_folds(labels: Sequence[str], *, folds: int, seed: int) -> list[HoldoutSplit]:
    """Stratified folds: each row of a label with 2 or more rows is validated exactly once.

    The same labels as `split_holdout` holds out, so validation judges what the holdout will: a
    label of 2-4 rows is validated in 2-4 of the folds, one of its rows always trains.
    """
    counts = Counter(labels)
    label_array = np.asarray(labels, dtype=object)
    evaluable = np.fromiter((counts[label] >= MIN_ROWS_TO_EVALUATE for label in labels), bool)
    if max(counts.values()) < folds:  # StratifiedKFold needs one label with a row per fold
        return []
    rows, always_train = np.flatnonzero(evaluable), np.flatnonzero(~evaluable)
    excluded = {label: n for label, n in sorted(counts.items()) if n < MIN_ROWS_TO_EVALUATE}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class in y has only 2 members": intended, see above.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        assignments = list(splitter.split(rows, label_array[rows]))
    return [
        HoldoutSplit(
            train_rows=np.sort(np.concatenate([rows[train], always_train])),
            holdout_rows=rows[held_out],
            excluded_labels=excluded,
        )
        for train, held_out in assignments
    ]


def score_predictions(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision, recall, F1 and support (JSON-serialisable).

    Macro-F1 averages over the labels of `expected`: a label with no held-out row has no F1.
    """
    labels = sorted(set(expected))
    precision, recall, f1, support = precision_recall_fscore_support(
        expected, predicted, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(expected, predicted)),
        "macro_f1": float(np.mean(f1)),
        "per_label": {
            label: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
    }


def accuracy_and_macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> tuple[float, float]:
    """The two scores of `score_predictions`, without its per-call overhead (used in searches)."""
    actual = Counter(expected)
    guessed = Counter(predicted)
    hits = Counter(e for e, p in zip(expected, predicted, strict=True) if e == p)
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (rows predicted as the label + rows of the label)
    f1 = [2 * hits[label] / (guessed[label] + actual[label]) for label in actual]
    return sum(hits.values()) / len(expected), sum(f1) / len(f1)


def stratified_parts(labels: Sequence[str], *, parts: int, seed: int) -> list[np.ndarray]:
    """Cut row positions into `parts` groups of near-equal size, each label's rows dealt evenly.

    One validation split's rows scored part by part, plan against plan, show how much those rows
    alone move a score: a noise estimate for a single split that needs no further fit.
    """
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    by_label = shuffled[np.argsort(np.asarray(labels, dtype=object)[shuffled], kind="stable")]
    return [np.sort(by_label[part::parts]) for part in range(parts)]


def scores_in_parts(
    expected: Sequence[str], predicted: Sequence[str], parts: Sequence[np.ndarray]
) -> list[tuple[float, float]]:
    """`accuracy_and_macro_f1` of all the rows, then of each part (row positions) of them."""
    return [accuracy_and_macro_f1(expected, predicted)] + [
        accuracy_and_macro_f1([expected[i] for i in part], [predicted[i] for i in part])
        for part in parts
    ]
