"""Training plans: features, solver, regularisation and class weights, chosen by data size.

No single setting is right from a thousand rows to a million: a fixed SGD penalty that suits
100 000 rows is ~20x too weak at 2 500, rare labels need class weights on some data and not on
other, and liblinear's exact solver is cheap on small data but far too slow on a million rows. So
`candidate_plans` offers a small grid that depends on the row count only, and
`algorithm.ml.search.choose_plan` picks from it by cross-validation on the training rows (never the
holdout). On small data the grid starts with the exact lines a user would write instead
(`TfidfVectorizer()` with `LinearSVC()` or `LogisticRegression()`), and another plan replaces them
only when it validates better on both scores by more than the noise (algorithm/ml/selection.py).
docs/classifier.md has the measurements behind every number here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

# At or below this many rows liblinear's LinearSVC fits in seconds (single core); above it,
# SGD (both cores) fits in a fraction of that with the same holdout scores.
LIBLINEAR_MAX_ROWS = 30_000
# Up to this many rows the candidates are scored by 5-fold cross-validation (every training row
# is validated once: a single 20 % split of 1 000 rows is too noisy to choose by); above, one split
# (5 folds of 4 000 rows took 18-40 s of CPU, one split a fifth of that).
CROSS_VALIDATION_MAX_ROWS = 2_000
CROSS_VALIDATION_FOLDS = 5
# Above this many rows no search: the time a million rows may take is spent on one good fit.
SEARCH_MAX_ROWS = 200_000
# One-off tokens (ids, typos, version strings) dominate a large vocabulary; on small data they
# are the only evidence some rare labels have.
MIN_DF_FROM_ROWS = 30_000
# SGD's penalty at a million rows: smaller ones need many more epochs (a single fit of 800 000
# rows took 605 s at 1.25e-6 against about 60 s at 2e-5), far over the time budget.
LARGE_DATA_ALPHA = 2e-5
SGD_ALPHAS = (2e-5, 5e-5, 1e-4)
# Character n-grams within words (scikit-learn's char_wb) catch what a label's texts share below
# the word: inflections, compounds, the punctuation and layout a tokenizer drops. 6-12 points of
# accuracy on the fortunes corpus, 1-4 on debian, at 1 000 - 10 000 rows (docs/classifier.md).
CHARACTER_NGRAMS = (2, 5)
LIBLINEAR_CS = (1.0, 0.3, 3.0)
# `LogisticRegression()` (lbfgs) fits 5-10x slower than `LinearSVC()` (0.2-1.2 s of CPU per fit at
# 640-3 200 rows, one BLAS thread): a candidate (the bar, in practice) up to this size only.
LOGREG_MAX_ROWS = 5_000


LinearClassifier: TypeAlias = SGDClassifier | LinearSVC | LogisticRegression
# Words (TfidfVectorizer), or words and characters side by side (FeatureUnion of two)
Vectorizer: TypeAlias = TfidfVectorizer | FeatureUnion


@dataclass(frozen=True)
class TrainingPlan:
    """How to fit one model: the features and the linear classifier."""

    ngram_max: int  # 1: words; 2: words and pairs of adjacent words
    min_df: int  # a term must occur in this many texts to become a feature
    solver: Literal["liblinear", "logreg", "sgd"]
    # liblinear (LinearSVC) and logreg (LogisticRegression): C, higher fits harder;
    # sgd: alpha, higher fits softer
    regularization: float
    class_weight: Literal["balanced"] | None
    chosen_by: str = "data size"
    sublinear_tf: bool = True  # term counts as 1 + log(count); False: scikit-learn's default
    # Character n-grams within words (char_wb, CHARACTER_NGRAMS) beside the words
    characters: bool = False
    # After a search: the chosen plan's validation accuracy and macro_f1, and the bar it had to
    # clear (bar_accuracy, bar_macro_f1: the better of the defaults' on each score).
    validation: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-serialisable values (it goes into the metrics and the manifest)."""
        return asdict(self)


# scikit-learn's defaults: `TfidfVectorizer()` features with `LinearSVC()` / `LogisticRegression()`.
LINEARSVC_DEFAULTS = TrainingPlan(1, 1, "liblinear", 1.0, None, sublinear_tf=False)
LOGREG_DEFAULTS = TrainingPlan(1, 1, "logreg", 1.0, None, sublinear_tf=False)
DEFAULT_PLANS = (LINEARSVC_DEFAULTS, LOGREG_DEFAULTS)


def candidate_plans(rows: int) -> list[TrainingPlan]:
    """The plans worth comparing at this many training rows; earlier plans win ties.

    Up to LIBLINEAR_MAX_ROWS: the defaults, words or words + pairs at three strengths with and
    without class weights, and words + pairs + characters with and without class weights.
    """
    min_df = 1 if rows <= MIN_DF_FROM_ROWS else 2
    if rows > SEARCH_MAX_ROWS:
        return [TrainingPlan(2, min_df, "sgd", LARGE_DATA_ALPHA, None)]
    if rows > LIBLINEAR_MAX_ROWS:
        return [TrainingPlan(2, min_df, "sgd", alpha, None) for alpha in SGD_ALPHAS]
    defaults = [LINEARSVC_DEFAULTS, *([LOGREG_DEFAULTS] if rows <= LOGREG_MAX_ROWS else [])]
    return (
        defaults
        + [
            TrainingPlan(ngram_max, min_df, "liblinear", c, weight)
            for ngram_max in (1, 2)
            for weight in (None, "balanced")
            for c in LIBLINEAR_CS
            # The softer C only ever won with words and no class weights (docs/classifier.md).
            if c >= 1.0 or (ngram_max == 1 and weight is None)
        ]
        + [
            # Characters cost 3-5x the fitting time of words + pairs (a vocabulary 10x larger):
            # one strength; C=0.5 and 3 were within about a point of C=1 either way.
            TrainingPlan(2, min_df, "liblinear", 1.0, weight, characters=True)
            for weight in (None, "balanced")
        ]
    )


def default_plan(rows: int) -> TrainingPlan:
    """The plan used without a search (too many rows, or too few to validate on)."""
    return candidate_plans(rows)[0]


def build_vectorizer(plan: TrainingPlan) -> Vectorizer:
    """Return an unfitted vectorizer for a plan (see algorithm/ml/tuning.py)."""
    words = TfidfVectorizer(
        ngram_range=(1, plan.ngram_max),
        sublinear_tf=plan.sublinear_tf,
        min_df=plan.min_df,
        dtype=np.float64,
    )
    if not plan.characters:
        return words
    characters = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=CHARACTER_NGRAMS,
        sublinear_tf=plan.sublinear_tf,
        min_df=plan.min_df,
        dtype=np.float64,
    )
    # Side by side, each normalised on its own: words weigh as much as the ~15x more numerous
    # character n-grams (one vectorizer for both scored 0.5-2 points lower on debian).
    return FeatureUnion([("words", words), ("characters", characters)])


def build_classifier(plan: TrainingPlan) -> LinearClassifier:
    """Return an unfitted linear classifier for a plan (see algorithm/ml/tuning.py)."""
    if plan.solver == "liblinear":
        return LinearSVC(C=plan.regularization, class_weight=plan.class_weight, random_state=0)
    if plan.solver == "logreg":
        return LogisticRegression(C=plan.regularization, class_weight=plan.class_weight)
    return SGDClassifier(
        loss="modified_huber",
        alpha=plan.regularization,
        class_weight=plan.class_weight,
        n_jobs=2,  # one-vs-rest in threads: both cores
        random_state=0,
    )


@contextlib.contextmanager
def quiet_fitting(*, one_blas_thread: bool) -> Iterator[None]:
    """Fit without convergence warnings and, for lbfgs, with one BLAS thread (process-wide).

    Both settings are global: a search fitting in threads holds this once around all its fits.
    """
    # lbfgs's dense products are small: with the default BLAS threads on a busy 2-core machine
    # they spin against each other (measured: 14 s wall, 4.2 s CPU for 800 rows, 40 labels;
    # one thread: 2.9 s wall, 0.6 s CPU). The other solvers do not use BLAS threads.
    blas = (
        threadpool_limits(limits=1, user_api="blas")
        if one_blas_thread
        else contextlib.nullcontext()
    )
    with warnings.catch_warnings(), blas:
        # liblinear and lbfgs may stop at their iteration limit on a hard plan (high C, class
        # weights); the model they stop with is usable, and validation judges it like any other.
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def fit_classifier(features: Any, labels: Sequence[str], plan: TrainingPlan) -> LinearClassifier:
    """Fit a plan's classifier on features (inside `quiet_fitting`)."""
    classifier = build_classifier(plan)
    classifier.fit(features, np.asarray(labels, dtype=object))
    # scikit-learn multiplies by coef_.T; unless that is C-contiguous scipy copies the whole
    # matrix on every predict call (milliseconds per text for SGDClassifier's C-ordered coef_).
    classifier.coef_ = np.asfortranarray(classifier.coef_)
    return classifier
