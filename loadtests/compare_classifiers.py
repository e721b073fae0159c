"""Compare TF-IDF settings and linear classifiers on the Debian corpus (docs/classifier.md).

    python -m loadtests.compare_classifiers [--rows N]

One stratified 80/20 split with seed 0; prints a Markdown table: holdout accuracy, macro-F1,
fit seconds, and single-text predict latency through scikit-learn and through FastPredictor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from algorithm.ml import FastPredictor, TrainedModel, fit_model, predict_labels
from loadtests.corpus import load_debian_corpus

UNI = {"ngram_range": (1, 1), "sublinear_tf": True, "min_df": 2}
BI = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
SGD = {"n_jobs": 2, "random_state": 0}
CANDIDATES: list[tuple[str, dict[str, Any], Callable[[], Any]]] = [
    ("uni, min_df=1", {**UNI, "min_df": 1}, lambda: LinearSVC(C=0.5)),
    ("uni, min_df=2", UNI, lambda: LinearSVC(C=0.5)),
    ("uni+bi, min_df=2, raw tf", {**BI, "sublinear_tf": False}, lambda: LinearSVC(C=0.5)),
    ("uni+bi, min_df=1", {**BI, "min_df": 1}, lambda: LinearSVC(C=0.5)),
    ("uni+bi, min_df=2", BI, lambda: LinearSVC(C=0.5)),
    ("uni+bi, min_df=2", BI, lambda: LinearSVC(C=1.0)),
    ("uni+bi, min_df=2", BI, lambda: LinearSVC(C=0.2)),
    ("uni+bi, min_df=2", BI, lambda: SGDClassifier(loss="hinge", alpha=2e-5, **SGD)),
    ("uni+bi, min_df=2", BI, lambda: SGDClassifier(loss="modified_huber", alpha=1e-5, **SGD)),
    ("uni+bi, min_df=2", BI, lambda: SGDClassifier(loss="modified_huber", alpha=2e-5, **SGD)),
    ("uni+bi, min_df=2", BI, lambda: SGDClassifier(loss="modified_huber", alpha=5e-5, **SGD)),
    ("uni+bi, min_df=2", BI, lambda: LogisticRegression(C=20, max_iter=300)),
    ("uni+bi, min_df=2", BI, lambda: RidgeClassifier(alpha=1.0, solver="sparse_cg")),
    ("uni+bi, min_df=2", BI, lambda: ComplementNB(alpha=0.3)),
]


def describe(classifier: Any) -> str:
    """Return a short name with the parameters that differ between candidates."""
    name = type(classifier).__name__
    params = classifier.get_params()
    keys = [k for k in ("loss", "C", "alpha", "solver") if k in params]
    shown = [f"{k}={params[k]}" for k in keys if not (k == "solver" and params[k] == "auto")]
    return f"{name}({', '.join(shown)})"


def predict_one_with_sklearn(model: TrainedModel, text: str) -> str:
    """Predict one text through scikit-learn, as a naive server would."""
    return predict_labels(model, [text])[0]


def single_text_micros(predict: Callable[[str], Any], texts: list[str]) -> float:
    """Return the mean microseconds to predict one text at a time."""
    started = time.perf_counter()
    for text in texts:
        predict(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


def texts_per_second(predict: Callable[[list[str]], Any], texts: list[str], size: int) -> float:
    """Return the texts per second when predicting texts in batches of size."""
    batches = [texts[start : start + size] for start in range(0, len(texts), size)]
    started = time.perf_counter()
    for batch in batches:
        predict(batch)
    return len(texts) / (time.perf_counter() - started)


def report_chosen_pipeline(train_x: list[str], train_y: Any, test_x: list[str]) -> None:
    """Print latency, batch throughput and label agreement for algorithm.ml's own pipeline."""
    model = fit_model(train_x, list(train_y))
    fast = FastPredictor(model)
    agree = fast.predict_many(test_x) == predict_labels(model, test_x)
    agree_one = [fast.predict_one(text) for text in test_x] == predict_labels(model, test_x)
    sample = test_x[:2000]
    print(f"\nalgorithm.ml pipeline: {describe(model.classifier)}")
    print(f"FastPredictor agrees with scikit-learn on {len(test_x)} texts: {agree and agree_one}")
    print("| path | 1 text, µs | batch 64, texts/s | batch 1 000, texts/s |")
    print("|---|---|---|---|")
    paths: list[tuple[str, Callable[[str], Any], Callable[[list[str]], Any]]] = [
        ("scikit-learn", partial(predict_one_with_sklearn, model), partial(predict_labels, model)),
        ("FastPredictor", fast.predict_one, fast.predict_many),
    ]
    for name, one, many in paths:
        print(
            f"| {name} | {single_text_micros(one, sample):.0f} "
            f"| {texts_per_second(many, test_x, 64):,.0f} "
            f"| {texts_per_second(many, test_x, 1000):,.0f} |"
        )


def main() -> None:
    """Run every candidate on one split and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="use only the first N rows (0: all)")
    parser.add_argument("--chosen-only", action="store_true", help="skip the candidate table")
    args = parser.parse_args()
    corpus = load_debian_corpus()
    if args.rows:
        corpus = corpus[: args.rows]
    texts = [text for text, _ in corpus]
    labels = np.asarray([label for _, label in corpus], dtype=object)
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=0.2, stratify=labels, random_state=0
    )
    sample = test_x[:1000]
    print(f"{len(texts)} rows, {len(set(labels))} labels, {len(test_x)} held out\n")
    report_chosen_pipeline(train_x, train_y, test_x)
    if args.chosen_only:
        return
    print("\n| features | classifier | accuracy | macro-F1 | fit s | sklearn µs | fast µs |")
    print("|---|---|---|---|---|---|---|")
    for features, settings, make_classifier in CANDIDATES:
        vectorizer, classifier = TfidfVectorizer(**settings), make_classifier()
        started = time.perf_counter()
        classifier.fit(vectorizer.fit_transform(train_x), train_y)
        fit_seconds = time.perf_counter() - started
        if hasattr(classifier, "coef_"):  # as algorithm.ml.fit_model does: no copy per predict
            classifier.coef_ = np.asfortranarray(classifier.coef_)
        model = TrainedModel(vectorizer=vectorizer, classifier=classifier)
        predicted = predict_labels(model, test_x)
        sklearn_us = single_text_micros(partial(predict_one_with_sklearn, model), sample)
        fast = "n/a"
        if hasattr(classifier, "coef_") and not isinstance(classifier, ComplementNB):
            fast = f"{single_text_micros(FastPredictor(model).predict_one, sample):.0f}"
        accuracy = accuracy_score(test_y, predicted)
        macro_f1 = f1_score(test_y, predicted, average="macro", zero_division=0)
        print(
            f"| {features} ({len(vectorizer.vocabulary_)} terms) | {describe(classifier)} "
            f"| {accuracy:.3f} | {macro_f1:.3f} | {fit_seconds:.1f} | {sklearn_us:.0f} | {fast} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
