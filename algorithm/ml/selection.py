"""Which plan to train, from the plans' validation scores: the bar, the margins, the cost.

`algorithm.ml.search.choose_plan` scores the candidate plans of algorithm/ml/tuning.py on
validation rows;
these rules turn the scores into a choice. The bar is the better scikit-learn default on each
score; another plan clears it only by more than the noise of the validation that measured it
and of the holdout the user will compare on; and of the plans that clear it, one with character
n-grams (about 3x the CPU per prediction) must also beat the best word plan by a set price. A
choice made on one validation split is confirmed on folds before it is trained.
docs/classifier.md has the measurements behind every number here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from algorithm.ml.tuning import LIBLINEAR_MAX_ROWS, TrainingPlan

# A plan replaces the defaults only if, on both scores, its mean paired difference to the better
# default exceeds this many standard errors of that difference: first over the 5 folds, then,
# for the plans still in the race and the default(s) that set the bar, over those and 5 more
# folds shuffled with another seed (the two rounds share rows, so their standard error is too
# small: hence the larger factor). Smaller factors chose plans that the holdout then ranked
# below the defaults (docs/classifier.md).
FIRST_ROUND_MARGIN = 1.5
SECOND_ROUND_MARGIN = 2.0
# Above CROSS_VALIDATION_MAX_ROWS there is one validation split, so no folds to measure noise by:
# its rows are scored in this many stratified parts instead (no further fit), and up to
# LIBLINEAR_MAX_ROWS a plan must clear the bar by SPLIT_MARGIN standard errors of its paired
# differences over them. Without a margin the split's noise chose plans that the holdout ranked
# below `LinearSVC()` (docs/classifier.md).
VALIDATION_PARTS = 5
SPLIT_MARGIN = 1.5
# The best of a dozen plans on one split is partly the luckiest: up to LIBLINEAR_MAX_ROWS, a plan
# chosen there is trained only if it also clears the bar, by FIRST_ROUND_MARGIN and the
# holdout's margin, on this many folds of all the training rows (reshuffled; every row validates
# once; the noise from VALIDATION_PARTS parts of each fold), scoring just it and the default(s)
# that set the bar. Without it, 3 of 12 debian splits of 5 000 - 20 000 rows trained a word plan
# that the holdout ranked below `LinearSVC()`; all 12 plans on 3 folds cost 3-4x the search's
# time (docs/classifier.md).
CONFIRMATION_FOLDS = 3
# The user compares on the holdout (`train_model` keeps HOLDOUT_FRACTION of the table back),
# which is noisier than the validation that chose: up to LIBLINEAR_MAX_ROWS a plan's lead must
# also exceed this many standard errors of its difference on a holdout of that size (estimated
# from the spread of the validation columns, scaled to the holdout's rows; `holdout_scale`).
# Without it, on 1 000 - 2 500 rows five folds passed a words + characters plan 2-3 points
# ahead that a 200-row holdout then ranked one row behind (docs/classifier.md).
HOLDOUT_FRACTION = 0.2
HOLDOUT_MARGIN = 1.65
# Character n-grams cost about 3x the CPU of a word plan per prediction, and a third of the
# texts/s in 1 000-text bodies (`python -m loadtests.feature_cost`, `make bench`). A plan with
# them is trained only for a validation lead of at least this much, on both accuracy and
# macro-F1, over the best word plan: on the fortunes corpus they led by 3-9 points, on the
# Debian descriptions by 1-3.4 points of accuracy and -1.9 to +2.4 of macro-F1, not worth two
# thirds of the batch throughput (docs/classifier.md).
CHARACTER_PRICE = 0.025


def plans_above_the_bar(
    accuracy: np.ndarray,
    macro_f1: np.ndarray,
    defaults: np.ndarray,
    margin: float,
    *,
    parts: np.ndarray | None = None,
    holdout_scale: float = 0.0,
) -> np.ndarray:
    """Which plans beat the better default on both scores by `margin` standard errors.

    `accuracy` and `macro_f1` hold one row per plan and one column per validation fold;
    `defaults` marks the defaults' rows (never above their own bar). The standard error is that
    of a plan's paired differences to the default over the folds, or, given `parts`, over
    those: accuracy and macro-F1 on each part of the validation rows (2 x plans x parts). With one
    column and no parts there is none: at or above the bar on both scores is enough. With a
    `holdout_scale`, the lead must also be HOLDOUT_MARGIN times the columns' standard deviation
    times that scale: the standard error the holdout itself will show.
    """
    above = np.ones(len(defaults), dtype=bool)
    for scores, by_part, reference in zip(
        (accuracy, macro_f1),
        parts if parts is not None else (accuracy, macro_f1),
        bar_setters(accuracy, macro_f1, defaults),
        strict=True,
    ):
        difference = (scores - scores[reference]).mean(axis=1)
        spread = by_part - by_part[reference]
        columns = spread.shape[1]
        if columns > 1:  # with one column there is no noise to measure
            deviation = spread.std(axis=1, ddof=1)
            difference -= np.maximum(
                margin * deviation / np.sqrt(columns),  # the validation's standard error
                HOLDOUT_MARGIN * deviation * holdout_scale,  # the holdout's
            )
        above &= difference >= 0
    return above & ~defaults


def best_worth_its_cost(
    plans: Sequence[TrainingPlan],
    above: np.ndarray,
    accuracy: np.ndarray,
    macro_f1: np.ndarray,
    margin: float,
    *,
    defaults: np.ndarray,
    parts: np.ndarray | None = None,
    holdout_scale: float = 0.0,
) -> int:
    """The row of the plan to train: the best above the bar by accuracy + macro-F1 (0 if none).

    A plan with character n-grams wins only if it also beats the best word plan (by accuracy +
    macro-F1, whether or not that one cleared the bar: what characters add is measured against
    what words do) by the same margins (`plans_above_the_bar` with that plan as the default) and
    by CHARACTER_PRICE on both scores. Otherwise the best word plan above the bar wins, or, if
    there is none, the first default.
    """
    if not above.any():
        return 0
    sums = accuracy.mean(axis=1) + macro_f1.mean(axis=1)
    best = int(np.argmax(np.where(above, sums, -np.inf)))
    characters = np.array([plan.characters for plan in plans])
    if not characters[best]:
        return best
    words_above = above & ~characters
    fallback = (
        int(np.argmax(np.where(words_above, sums, -np.inf)))
        if words_above.any()
        else int(np.flatnonzero(defaults)[0])
    )
    best_words = int(np.argmax(np.where(~characters, sums, -np.inf)))
    reference = np.zeros(len(plans), dtype=bool)
    reference[best_words] = True
    clears = (
        above
        & characters
        & plans_above_the_bar(
            accuracy, macro_f1, reference, margin, parts=parts, holdout_scale=holdout_scale
        )
    )
    for scores in (accuracy, macro_f1):
        lead = scores.mean(axis=1) - scores[best_words].mean()
        clears &= lead >= CHARACTER_PRICE - 1e-9  # the scores are sums of fractions
    return int(np.argmax(np.where(clears, sums, -np.inf))) if clears.any() else fallback


def holdout_scale(rows: int, rows_per_column: float) -> float:
    """How a validation column's standard deviation scales to the holdout's standard error.

    A score on m rows varies as 1/sqrt(m); the holdout of a table whose training rows are `rows`
    has rows * HOLDOUT_FRACTION / (1 - HOLDOUT_FRACTION) rows. 0 above LIBLINEAR_MAX_ROWS, where
    the SGD plans are chosen with no margin (`split_margin`).
    """
    if rows > LIBLINEAR_MAX_ROWS or rows_per_column <= 0:
        return 0.0
    holdout_rows = rows * HOLDOUT_FRACTION / (1 - HOLDOUT_FRACTION)
    return float(np.sqrt(rows_per_column / holdout_rows))


def split_margin(rows: int) -> float:
    """The margin on one validation split of this many training rows, in standard errors.

    0 for the SGD plans above LIBLINEAR_MAX_ROWS: their search was measured, up to the
    million-row budget, choosing the best of them with no margin, and stays as it was.
    """
    return SPLIT_MARGIN if rows <= LIBLINEAR_MAX_ROWS else 0.0


def bar_setters(
    accuracy: np.ndarray, macro_f1: np.ndarray, defaults: np.ndarray
) -> tuple[int, int]:
    """The rows of the default with the best mean accuracy and of that with the best macro-F1."""
    rows = np.flatnonzero(defaults)
    best_accuracy, best_macro_f1 = (
        rows[np.argmax(s.mean(axis=1)[rows])] for s in (accuracy, macro_f1)
    )
    return int(best_accuracy), int(best_macro_f1)
