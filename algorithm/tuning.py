"""Training plans: features, solver, regularisation and class weights, chosen by data size.

No single setting is right from a thousand rows to a million: a fixed SGD penalty that suits
100 000 rows is ~20x too weak at 2 500, rare labels need class weights on some data and not on
other, and liblinear's exact solver is cheap on small data but far too slow on a million rows. So
`candidate_plans` offers a small grid that depends on the row count only, and
`algorithm.ml.choose_plan` picks from it by cross-validation on the training rows (never the
holdout). On small data the grid starts with the exact lines a user would write instead
(`TfidfVectorizer()` with `LinearSVC()` or `LogisticRegression()`), and another plan replaces them
only when it validates better on both scores. docs/classifier.md has the measurements behind
every number here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# At or below this many rows liblinear's LinearSVC fits in seconds (single core); above it,
# SGD (both cores) fits in a fraction of that with the same holdout scores.
LIBLINEAR_MAX_ROWS = 30_000
# Up to this many rows the candidates are scored by 5-fold cross-validation (every training row
# is validated once: a single 20 % split of 1 000 rows is too noisy to choose by); above, one split.
CROSS_VALIDATION_MAX_ROWS = 5_000
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
LIBLINEAR_CS = (1.0, 0.3, 3.0)
# `LogisticRegression()` (lbfgs) fits 30-100x slower than `LinearSVC()` (3-10 s of CPU at 800-4 000
# rows against 0.05-0.2 s): it is a candidate where cross-validation scores the plans.
LOGREG_MAX_ROWS = CROSS_VALIDATION_MAX_ROWS


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
    """The plans worth comparing at this many training rows; earlier plans win ties."""
    min_df = 1 if rows <= MIN_DF_FROM_ROWS else 2
    if rows > SEARCH_MAX_ROWS:
        return [TrainingPlan(2, min_df, "sgd", LARGE_DATA_ALPHA, None)]
    if rows > LIBLINEAR_MAX_ROWS:
        return [TrainingPlan(2, min_df, "sgd", alpha, None) for alpha in SGD_ALPHAS]
    defaults = [LINEARSVC_DEFAULTS, *([LOGREG_DEFAULTS] if rows <= LOGREG_MAX_ROWS else [])]
    return defaults + [
        TrainingPlan(ngram_max, min_df, "liblinear", c, weight)
        for ngram_max in (1, 2)
        for weight in (None, "balanced")
        for c in LIBLINEAR_CS
    ]


def default_plan(rows: int) -> TrainingPlan:
    """The plan used without a search (too many rows, or too few to validate on)."""
    return candidate_plans(rows)[0]
