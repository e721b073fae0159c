"""The service's training against the scikit-learn baselines a user would write, on real texts.

Each test splits the rows the way `train_model` does (stratified, seeded), fits `LinearSVC()` and
`LogisticRegression()` on `TfidfVectorizer()` features of the training side, and compares the
model `train_model` evaluates on that same holdout with the better of them. At a few hundred rows
one holdout of 90-180 rows moves by a point per row, so the scores are averaged over three splits
(seeds 0-2), each method scored on the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from algorithm.evaluation import score_predictions, split_holdout
from algorithm.ml import train_model

FIXTURES = Path(__file__).parent.parent / "fixtures"


def read_fixture(name: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text("utf-8").splitlines()]
    return [row["text"] for row in rows], [row["label"] for row in rows]


SEEDS = (0, 1, 2)
# At 450 rows one holdout row is 1.1 points: closer than half a row is a tie, not a loss.
HALF_A_HOLDOUT_ROW = 0.005


def best_baseline(texts: list[str], labels: list[str], seed: int) -> dict[str, float]:
    """The better accuracy and the better macro-F1 of the two default baselines, same split."""
    split = split_holdout(labels, holdout_fraction=0.2, seed=seed)
    assert split is not None
    train_texts = [texts[i] for i in split.train_rows]
    train_labels = np.asarray([labels[i] for i in split.train_rows])
    expected = [labels[i] for i in split.holdout_rows]
    best = {"accuracy": 0.0, "macro_f1": 0.0}
    for classifier in (LinearSVC(), LogisticRegression()):
        vectorizer = TfidfVectorizer()
        classifier.fit(vectorizer.fit_transform(train_texts), train_labels)
        predicted = classifier.predict(vectorizer.transform([texts[i] for i in split.holdout_rows]))
        scores = score_predictions(expected, [str(label) for label in predicted])
        for metric in best:
            best[metric] = max(best[metric], scores[metric])
    return best


@pytest.mark.parametrize("rows", [450, 900])  # six package sections, 75 or 150 rows each
def test_service_is_at_least_as_good_as_the_better_baseline(rows):
    texts, labels = read_fixture("debian_descriptions.jsonl")
    step = len(texts) // rows
    texts, labels = texts[::step], labels[::step]
    service = {"accuracy": 0.0, "macro_f1": 0.0}
    baseline = {"accuracy": 0.0, "macro_f1": 0.0}
    for seed in SEEDS:
        _, metrics = train_model(texts, labels, seed=seed)
        best = best_baseline(texts, labels, seed)
        for metric in service:
            service[metric] += metrics[metric] / len(SEEDS)
            baseline[metric] += best[metric] / len(SEEDS)
    assert service["accuracy"] >= baseline["accuracy"] - HALF_A_HOLDOUT_ROW
    assert service["macro_f1"] >= baseline["macro_f1"] - HALF_A_HOLDOUT_ROW


def test_rare_labels_of_a_long_tail_train_and_the_rest_are_evaluated():
    texts, labels = read_fixture("fortunes.jsonl")  # 40 fortune categories, two with one row
    model, metrics = train_model(texts, labels)
    assert metrics["holdout"] is True
    excluded = metrics["excluded_labels"]
    assert excluded["magic"] == 1 and excluded["news"] == 1
    assert all(rows <= 3 for rows in excluded.values())  # too few to hold one out
    assert metrics["excluded_rows"] == sum(excluded.values())
    assert sorted([*metrics["per_label"], *excluded]) == sorted(set(labels))
    assert set(excluded) <= set(model.labels)
    baseline = best_baseline(texts, labels, seed=0)
    # Measured, not a guarantee at 800 rows: see docs/classifier.md for this corpus at 1k-1M rows.
    assert metrics["macro_f1"] >= baseline["macro_f1"] - 0.03
