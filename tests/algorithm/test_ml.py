"""Training and prediction of algorithm.ml.training, on real Debian package descriptions."""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from algorithm.ml import terms
from algorithm.ml.evaluation import accuracy_and_macro_f1, score_predictions
from algorithm.ml.selection import (
    CHARACTER_PRICE,
    SPLIT_MARGIN,
    best_worth_its_cost,
    holdout_scale,
    plans_above_the_bar,
    split_margin,
)
from algorithm.ml.terms import term_extractor
from algorithm.ml.training import (
    FastPredictor,
    TrainedModel,
    TrainingDataError,
    fit_model,
    predict_labels,
    score_labels,
    train_model,
)
from algorithm.ml.tuning import (
    LIBLINEAR_MAX_ROWS,
    LINEARSVC_DEFAULTS,
    LOGREG_DEFAULTS,
    TrainingPlan,
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
def trained(fixture_training: tuple[TrainedModel, dict]) -> tuple[TrainedModel, dict]:
    """The session's training of the same file (tests/conftest.py)."""
    return fixture_training


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


def test_single_row_label_trains_but_is_left_out_of_the_holdout(corpus):
    texts = [text for text, _ in corpus[::3]] + ["a lonely package description"]
    labels = [label for _, label in corpus[::3]] + ["lonely"]
    model, metrics = train_model(texts, labels)
    assert metrics["holdout"] is True  # the other six labels are still evaluated
    assert metrics["excluded_labels"] == {"lonely": 1}
    assert metrics["excluded_rows"] == 1
    assert sorted(metrics["per_label"]) == ["fonts", "games", "perl", "python", "science", "sound"]
    assert sum(row["support"] for row in metrics["per_label"].values()) == metrics["holdout_rows"]
    assert metrics["accuracy"] > 0.6
    assert metrics["train_rows"] == len(texts)
    assert "lonely" in model.labels  # the final model learned it anyway


def test_no_label_with_two_rows_skips_the_holdout_and_says_why():
    model, metrics = train_model(["one package", "another package"], ["a", "b"])
    assert metrics["holdout"] is False
    assert "no label has 2 rows" in metrics["reason"]
    assert metrics["accuracy"] is None and metrics["macro_f1"] is None
    assert model.labels == ["a", "b"]


def test_metrics_are_json_with_per_label_scores_and_the_training_choice(trained):
    _, metrics = trained
    assert json.loads(json.dumps(metrics)) == metrics
    for scores in metrics["per_label"].values():
        assert set(scores) == {"precision", "recall", "f1", "support"}
        assert 0.0 <= scores["f1"] <= 1.0 and scores["support"] == 30
    assert metrics["excluded_labels"] == {} and metrics["excluded_rows"] == 0
    assert metrics["training"]["solver"] in ("liblinear", "logreg", "sgd")
    assert "cross-validation" in metrics["training"]["chosen_by"]


def test_fast_predictor_matches_scikit_learn_on_every_text(model, corpus):
    texts = [text for text, _ in corpus] + UNSEEN_TEXTS
    expected = predict_labels(model, texts)
    fast = FastPredictor(model)
    assert [fast.predict_one(text) for text in texts] == expected
    assert fast.predict_many(texts) == expected  # large batch: vectorized path
    assert fast.predict_many(texts[:5]) == expected[:5]  # a few texts: one product for them
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


PLANS = {
    "liblinear": TrainingPlan(2, 1, "liblinear", 1.0, "balanced"),
    "characters": TrainingPlan(2, 1, "liblinear", 1.0, None, characters=True),
    "sgd": TrainingPlan(2, 2, "sgd", 2e-5, None),
    "linearsvc-defaults": LINEARSVC_DEFAULTS,
    "logreg-defaults": LOGREG_DEFAULTS,
}


@pytest.fixture(scope="module", params=[(solver, size) for solver in PLANS for size in (2, 6)])
def any_model(request, corpus) -> TrainedModel:
    """A model from every solver the training may choose, binary and multiclass."""
    solver, size = request.param
    wanted = ["fonts", "games", "perl", "python", "science", "sound"][:size]
    rows = [(text, label) for text, label in corpus if label in wanted]
    return fit_model([t for t, _ in rows], [label for _, label in rows], plan=PLANS[solver])


def test_fast_predictor_matches_scikit_learn_for_every_solver(any_model, corpus):
    texts = [text for text, _ in corpus] + UNSEEN_TEXTS
    fast = FastPredictor(any_model)
    expected = predict_labels(any_model, texts)
    assert [fast.predict_one(text) for text in texts] == expected
    assert fast.predict_many(texts) == expected  # one sparse matrix for the whole batch
    reference = any_model.classifier.decision_function(any_model.vectorizer.transform(texts))
    assert fast.decisions(texts).reshape(reference.shape) == pytest.approx(reference, abs=1e-12)
    # A few texts at a time (as the micro-batcher calls it under load), and web's coalesced
    # calls (about two dozen): one product per batch.
    for size in (7, 23):
        few = [label for batch in _batches(texts, size) for label in fast.predict_many(batch)]
        assert few == expected, size


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def test_a_few_long_texts_get_scikit_learns_labels(any_model, corpus):
    """Past what one thread multiplies, a few texts of a multiclass model take the sparse
    matrix (built from row pointers with one block of features, from (row, column) pairs with
    words and characters side by side): same labels."""
    long_texts = [" ".join(text for text, _ in corpus[start::16]) for start in range(16)]
    texts = [*long_texts[:8], "", *long_texts[8:15]]  # a text without features among them
    assert FastPredictor(any_model).predict_many(texts) == predict_labels(any_model, texts)


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_terms_are_scikit_learns(corpus, ngram_range, lowercase):
    vectorizer = TfidfVectorizer(ngram_range=ngram_range, lowercase=lowercase)
    # Word characters at the edges of tokens: underscores, digits, combining marks, a zero-width
    # space, an apostrophe (the fast tokenizer drops the pattern's word-boundary checks).
    edges = "a_b c1 d-e __ x_ e\u0301t\u00e9 3.14 l'été ab\u200bcd _a_ 1 22 Ⅻx"
    texts = [text for text, _ in corpus[::10]] + UNSEEN_TEXTS + [edges]
    analyze, terms = vectorizer.build_analyzer(), term_extractor(vectorizer)
    for text in texts:
        assert Counter(terms(text)) == Counter(analyze(text)), text


@pytest.mark.parametrize("ngram_range", [(2, 5), (1, 3), (3, 3)])
@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_character_terms_are_scikit_learns(corpus, ngram_range, lowercase):
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=lowercase)
    texts = [text for text, _ in corpus[::10]] + UNSEEN_TEXTS + ["a I x\tyz  Ünï -- Q: ::"]
    analyze, terms = vectorizer.build_analyzer(), term_extractor(vectorizer)
    for text in texts:
        assert Counter(terms(text)) == Counter(analyze(text)), text


def test_top_k_fast_path_equals_the_reference(any_model, corpus):
    texts = [text for text, _ in corpus[::20]] + UNSEEN_TEXTS
    fast = FastPredictor(any_model)
    expected = score_labels(any_model, texts, 3)
    per_text = [fast.top_k([text], 3)[0] for text in texts]
    for got, want in zip(per_text, expected, strict=True):
        assert [label for label, _ in got] == [label for label, _ in want]
        assert [score for _, score in got] == pytest.approx([s for _, s in want], abs=1e-9)
    batch = fast.top_k(texts, 3)  # a large batch: one sparse matrix
    few = [ranked for part in _batches(texts, 5) for ranked in fast.top_k(part, 3)]
    for got_batch, got_few, want in zip(batch, few, expected, strict=True):
        for got in (got_batch, got_few):
            assert [label for label, _ in got] == [label for label, _ in want]
            assert [score for _, score in got] == pytest.approx([s for _, s in want], abs=1e-9)


def test_top_k_ranks_like_the_prediction_with_scores_in_unit_interval(any_model, corpus):
    texts = [text for text, _ in corpus[::15]] + UNSEEN_TEXTS
    predicted = predict_labels(any_model, texts)
    for text, label, ranked in zip(
        texts, predicted, FastPredictor(any_model).top_k(texts, 2), strict=True
    ):
        assert ranked[0][0] == label, text
        scores = [score for _, score in ranked]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= score <= 1.0 for score in scores)


def test_top_k_bounds(model):
    fast = FastPredictor(model)
    everything = fast.top_k(["python bindings"], 100)[0]
    assert sorted(label for label, _ in everything) == model.labels  # k above the labels: all
    assert sum(score for _, score in everything) == pytest.approx(1.0)
    assert fast.top_k(["python bindings"], 1)[0][0][0] == fast.predict_one("python bindings")
    assert fast.top_k([], 3) == []
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be at least 1"):
            fast.top_k(["python bindings"], k)
        with pytest.raises(ValueError, match="k must be at least 1"):
            score_labels(model, ["python bindings"], k)


def test_fast_search_scores_equal_scikit_learns(model, corpus):
    expected = [label for _, label in corpus]
    predicted = predict_labels(model, [text + " python" for text, _ in corpus])
    reference = score_predictions(expected, predicted)
    fast = accuracy_and_macro_f1(expected, predicted)
    assert fast == pytest.approx((reference["accuracy"], reference["macro_f1"]), abs=1e-12)
    assert reference["accuracy"] < 1.0  # the appended word moved some predictions


def test_a_plan_must_beat_the_better_default_on_both_scores_by_more_than_the_noise():
    # Rows: LinearSVC() defaults, LogisticRegression() defaults, then three plans; columns: folds.
    accuracy = np.array(
        [
            [0.60, 0.62, 0.58, 0.61, 0.59],
            [0.50, 0.52, 0.49, 0.51, 0.50],
            [0.63, 0.65, 0.61, 0.64, 0.62],  # 3 points better on every fold
            [0.70, 0.52, 0.68, 0.55, 0.66],  # better on average, but not fold by fold
            [0.63, 0.65, 0.61, 0.64, 0.62],  # better accuracy ...
        ]
    )
    macro_f1 = np.array(
        [
            [0.40, 0.42, 0.38, 0.41, 0.39],
            [0.45, 0.47, 0.43, 0.46, 0.44],  # LogisticRegression() sets this bar
            [0.47, 0.49, 0.45, 0.48, 0.46],
            [0.50, 0.48, 0.52, 0.49, 0.50],
            [0.44, 0.46, 0.42, 0.45, 0.43],  # ... for a worse macro-F1
        ]
    )
    defaults = np.array([True, True, False, False, False])
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 1.5).tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
    # Without a margin, a better mean is enough (one validation split has no fold noise).
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 0.0).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]


def test_on_one_validation_split_a_plan_must_beat_the_noise_of_its_rows_scored_in_parts():
    # One validation split: the whole split's scores, and the same rows scored in five parts.
    # Rows: LinearSVC() defaults, then two plans one point ahead of it on the whole split.
    accuracy = np.array([[0.60], [0.61], [0.61]])
    macro_f1 = np.array([[0.50], [0.51], [0.51]])
    parts = np.array(
        [
            [
                [0.60, 0.58, 0.62, 0.61, 0.59],
                [0.66, 0.54, 0.67, 0.56, 0.62],  # ahead on average only: the parts disagree
                [0.615, 0.585, 0.63, 0.62, 0.60],  # ahead by about a point in every part
            ],
            [
                [0.50, 0.48, 0.52, 0.51, 0.49],
                [0.56, 0.44, 0.57, 0.46, 0.52],
                [0.515, 0.485, 0.53, 0.52, 0.50],
            ],
        ]
    )
    defaults = np.array([True, False, False])
    above = plans_above_the_bar(accuracy, macro_f1, defaults, SPLIT_MARGIN, parts=parts)
    assert above.tolist() == [False, False, True]
    # Without the margin (the rule before), a lead of any size on the whole split was enough.
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 0.0, parts=parts).tolist() == [
        False,
        True,
        True,
    ]
    # Above 30 000 training rows the SGD plans are chosen as before, by the best mean alone.
    assert split_margin(LIBLINEAR_MAX_ROWS) == SPLIT_MARGIN
    assert split_margin(LIBLINEAR_MAX_ROWS + 1) == 0.0


def test_a_lead_must_also_beat_the_noise_of_the_holdout_the_user_compares_on():
    # Five folds of 160 validation rows each (800 training rows; the holdout has 200).
    # Rows: LinearSVC() defaults; a plan 2 points ahead on every fold but by 0-4 points; a plan
    # 5 points ahead give or take one.
    accuracy = np.array(
        [
            [0.60, 0.60, 0.60, 0.60, 0.60],
            [0.62, 0.63, 0.61, 0.64, 0.60],
            [0.65, 0.65, 0.66, 0.64, 0.65],
        ]
    )
    macro_f1 = accuracy - 0.1
    defaults = np.array([True, False, False])
    scale = holdout_scale(800, 160)
    assert scale == pytest.approx((160 / 200) ** 0.5)
    # Clear of the folds' own noise (1.5 standard errors of the mean difference) ...
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 1.5).tolist() == [False, True, True]
    # ... but the holdout's 200 rows show a lead of 2 +- 1.4 points (one standard deviation of
    # the folds' differences, scaled to 200 rows), which 1.65 of them would swallow.
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 1.5, holdout_scale=scale).tolist() == [
        False,
        False,
        True,
    ]
    # More rows, a quieter holdout: on 20 times as many rows the same spread is no obstacle.
    big = holdout_scale(16_000, 160)
    assert plans_above_the_bar(accuracy, macro_f1, defaults, 1.5, holdout_scale=big).tolist() == [
        False,
        True,
        True,
    ]
    assert holdout_scale(LIBLINEAR_MAX_ROWS + 1, 160) == 0.0  # SGD's tier: as before


def test_characters_win_only_where_they_clearly_beat_the_best_word_plan():
    plans = [
        LINEARSVC_DEFAULTS,
        TrainingPlan(2, 1, "liblinear", 1.0, None),
        TrainingPlan(2, 1, "liblinear", 1.0, None, characters=True),
    ]
    defaults = np.array([True, False, False])
    choose = functools.partial(best_worth_its_cost, plans, defaults=defaults)
    words = np.array([0.64, 0.65, 0.63, 0.66, 0.64])
    accuracy = np.array([[0.60] * 5, words, [0.65, 0.64, 0.65, 0.66, 0.65]])  # +0.4 point, noisy
    macro_f1 = accuracy - 0.1
    above = np.array([False, True, True])
    # Characters have the best mean, but within the noise of the words plan's: words, cheaper.
    assert choose(above, accuracy, macro_f1, 1.5) == 1
    clearly = np.array([[0.60] * 5, words, words + 0.05])  # 5 points on every fold
    assert choose(above, clearly, clearly - 0.1, 1.5) == 2
    # 2 points on every fold clear the noise but not the price of characters (2.5 points).
    cheap_lead = np.array([[0.60] * 5, words, words + 0.02])
    assert CHARACTER_PRICE == 0.025
    assert choose(above, cheap_lead, cheap_lead - 0.1, 1.5) == 1
    # The holdout's noise counts here too: 5 points on folds, but not on a tiny holdout.
    noisy = np.array([[0.60] * 5, words, words + np.array([0.01, 0.09, 0.0, 0.1, 0.05])])
    assert choose(above, noisy, noisy - 0.1, 1.5) == 2
    assert choose(above, noisy, noisy - 0.1, 1.5, holdout_scale=0.9) == 1
    # Where no word plan clears the bar, characters are still measured against the best word
    # plan (what characters add), and if they fail, the defaults are trained.
    only_characters = np.array([False, False, True])
    assert choose(only_characters, clearly, clearly - 0.1, 1.5) == 2
    noisy_words = np.array([[0.60] * 5, [0.64, 0.60, 0.68, 0.60, 0.68], [0.65] * 5])
    assert choose(only_characters, noisy_words, noisy_words - 0.1, 1.5) == 0  # +1 over words
    assert choose(np.array([False, False, False]), accuracy, macro_f1, 1.5) == 0


def test_character_features_remember_short_words_only_and_within_a_bound(corpus, monkeypatch):
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5))
    vectorizer.fit([text for text, _ in corpus])
    lookup = vectorizer.vocabulary_.get

    def expected(text: str) -> Counter[int]:
        found = Counter(lookup(term) for term in vectorizer.build_analyzer()(text))
        found.pop(None, None)
        return found

    monkeypatch.setattr(terms, "WORDS_REMEMBERED", 50)
    indices = terms.CharacterIndices(vectorizer)
    long_word = "pythonbindingsforthegnuscientificlibrary" * 3  # a 120-character token
    for text in [long_word, f"{long_word} python", "Python bindings"] * 2:
        assert Counter(indices(text)) == expected(text), text  # remembered or not: the same
    assert set(indices.remembered) == {"python", "bindings"}  # the long token is not kept
    for number in range(200):  # many distinct short words: the memory never passes its bound
        text = f"w{number} library {number}"
        assert Counter(indices(text)) == expected(text)
        assert len(indices.remembered) <= 50
