"""Training and prediction of algorithm.ml, on real Debian package descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algorithm.ml import (
    FastPredictor,
    TrainedModel,
    TrainingDataError,
    predict_labels,
    train_model,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian_descriptions.jsonl"
UNSEEN_TEXTS = [
    "",
    "   ",
    "!!! ??? ...",
    "zzqx wvkj qqqp",  # no known token: the label comes from the intercepts alone
    "a",
    "Python bindings for the GNU scientific library",
    "PYTHON Perl FONTS games SOUND science",
    "Ünïcödé façade naïve café",
    "x " * 5000,
    "free and open source font for the desktop, with synth and drum sounds",
]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str]]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    return [(row["text"], row["label"]) for row in map(json.loads, lines)]


@pytest.fixture(scope="module")
def trained(corpus: list[tuple[str, str]]) -> tuple[TrainedModel, dict]:
    return train_model([text for text, _ in corpus], [label for _, label in corpus])


@pytest.fixture(scope="module")
def model(trained: tuple[TrainedModel, dict]) -> TrainedModel:
    return trained[0]


def test_training_reports_holdout_metrics(trained, corpus):
    model, metrics = trained
    assert metrics["holdout"] is True
    assert metrics["train_rows"] == len(corpus)
    assert metrics["holdout_rows"] == len(corpus) // 5
    assert 0.6 < metrics["accuracy"] <= 1.0  # six distinct sections of real descriptions
    assert 0.6 < metrics["macro_f1"] <= 1.0
    assert model.labels == ["fonts", "games", "perl", "python", "science", "sound"]


def test_no_rows_is_a_training_data_error():
    with pytest.raises(TrainingDataError, match=r"no training data: add labelled rows"):
        train_model([], [])


def test_one_label_is_a_training_data_error():
    with pytest.raises(TrainingDataError, match=r"at least two labels.*found 1: 'x'"):
        train_model(["one text", "another text"], ["x", "x"])


def test_tiny_label_skips_holdout_but_trains_on_everything(corpus):
    texts = [text for text, _ in corpus[:100]] + ["a lonely package description"]
    labels = [label for _, label in corpus[:100]] + ["lonely"]
    model, metrics = train_model(texts, labels)
    assert metrics["holdout"] is False
    assert "lonely" in metrics["reason"]
    assert metrics["accuracy"] is None and metrics["macro_f1"] is None
    assert metrics["train_rows"] == 101
    assert "lonely" in model.labels


def test_fast_predictor_matches_scikit_learn_on_every_text(model, corpus):
    texts = [text for text, _ in corpus] + UNSEEN_TEXTS
    expected = predict_labels(model, texts)
    fast = FastPredictor(model)
    assert [fast.predict_one(text) for text in texts] == expected
    assert fast.predict_many(texts) == expected  # large batch: vectorized path
    assert fast.predict_many(texts[:5]) == expected[:5]  # small batch: per-text path
    assert fast.predict_many([]) == []


def test_text_without_known_tokens_gets_scikit_learns_label(model):
    fast = FastPredictor(model)
    for text in ("", "zzqx wvkj", "!!!"):
        assert fast.predict_one(text) == predict_labels(model, [text])[0]


def test_binary_labels(corpus):
    rows = [(text, label) for text, label in corpus if label in ("fonts", "perl")]
    model, metrics = train_model([t for t, _ in rows], [label for _, label in rows])
    assert model.labels == ["fonts", "perl"]
    assert model.classifier.coef_.shape[0] == 1
    assert metrics["accuracy"] > 0.8
    texts = [text for text, _ in corpus] + UNSEEN_TEXTS
    fast = FastPredictor(model)
    assert [fast.predict_one(text) for text in texts] == predict_labels(model, texts)
