"""The search for a training plan: score the candidates on validation rows, choose one.

`choose_plan` fits every candidate plan of algorithm/ml/tuning.py on folds (or one split) of the
training rows, never the holdout, and algorithm/ml/selection.py's rules turn the scores into a
choice. `algorithm.ml.training.train_model` calls it on the rows it does not hold out.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from algorithm.ml.evaluation import (
    HoldoutSplit,
    cross_validation_folds,
    scores_in_parts,
    split_holdout,
    stratified_parts,
)
from algorithm.ml.selection import (
    CONFIRMATION_FOLDS,
    FIRST_ROUND_MARGIN,
    SECOND_ROUND_MARGIN,
    VALIDATION_PARTS,
    bar_setters,
    best_worth_its_cost,
    holdout_scale,
    plans_above_the_bar,
    split_margin,
)
from algorithm.ml.tuning import (
    CROSS_VALIDATION_FOLDS,
    CROSS_VALIDATION_MAX_ROWS,
    DEFAULT_PLANS,
    TrainingPlan,
    build_vectorizer,
    candidate_plans,
    default_plan,
    fit_classifier,
    quiet_fitting,
)

VALIDATION_FRACTION = 0.2


def validation_splits(labels: Sequence[str]) -> list[HoldoutSplit]:
    """Splits of the training rows to compare plans on: k folds on small data, else one.

    No splits (so the first plan is trained) when the one split would validate fewer rows than it
    is scored in parts: mostly labels of one row, which only ever train.
    """
    if len(labels) > CROSS_VALIDATION_MAX_ROWS:
        split = split_holdout(labels, holdout_fraction=VALIDATION_FRACTION, seed=0)
        if split is None or len(split.holdout_rows) < VALIDATION_PARTS:
            return []
        return [split]
    return cross_validation_folds(labels, folds=CROSS_VALIDATION_FOLDS, seed=0)


def splits_again(labels: Sequence[str]) -> list[HoldoutSplit]:
    """The second round's folds: the same rows shuffled into folds with another seed."""
    return cross_validation_folds(labels, folds=CROSS_VALIDATION_FOLDS, seed=1)


def choose_plan(texts: Sequence[str], labels: Sequence[str]) -> TrainingPlan:
    """Pick the plan that beats scikit-learn's defaults on validation rows, if one clearly does.

    The bar is the better of the defaults (`LinearSVC()`, `LogisticRegression()` on
    `TfidfVectorizer()`; the first plan where they are not candidates) on EACH score: trading
    accuracy for macro-F1 (class weights do) is not an improvement a user asked for. On folds, a
    plan must clear it by more than the folds' noise, then again over five reshuffled folds more;
    on one validation split, by more than the noise of its rows scored in parts
    (`plans_above_the_bar`), and by more than the noise of the holdout the user compares on.
    Among those that do, the best accuracy + macro-F1 wins, with characters only if they also
    beat the best word plan by their price (`best_worth_its_cost`); if none does, `LinearSVC()`.
    A plan chosen on one split is trained only if three folds of all the training rows confirm
    its lead (`confirm_on_folds`).
    """
    plans = candidates = candidate_plans(len(labels))
    splits = validation_splits(labels) if len(plans) > 1 else []
    if not splits:
        return default_plan(len(labels))
    defaults = np.array([plan in DEFAULT_PLANS for plan in plans])
    defaults[0] |= not defaults.any()
    margin = FIRST_ROUND_MARGIN if len(splits) > 1 else split_margin(len(labels))
    # One split has no other folds to show its noise: its own rows, scored in parts, do.
    in_parts = VALIDATION_PARTS if len(splits) == 1 and margin else 0
    accuracy, macro_f1, parts = fold_scores(texts, labels, plans, splits, parts=in_parts)
    validated = sum(len(split.holdout_rows) for split in splits) / len(splits)
    scale = holdout_scale(len(labels), validated / in_parts if in_parts else validated)
    above = plans_above_the_bar(
        accuracy, macro_f1, defaults, margin, parts=parts, holdout_scale=scale
    )
    if len(splits) > 1 and above.any():
        # A second round, reshuffled, for the finalists and the default(s) that set the bar.
        keep = above.copy()
        keep[list(bar_setters(accuracy, macro_f1, defaults))] = True
        finalists = [plan for plan, kept in zip(plans, keep, strict=True) if kept]
        more = fold_scores(texts, labels, finalists, splits_again(labels))
        both_accuracy = np.hstack([accuracy[keep], more[0]])
        both_macro_f1 = np.hstack([macro_f1[keep], more[1]])
        above_again = plans_above_the_bar(
            both_accuracy, both_macro_f1, defaults[keep], SECOND_ROUND_MARGIN, holdout_scale=scale
        )
        if above_again.any():
            plans, defaults, above = finalists, defaults[keep], above_again
            accuracy, macro_f1, margin = both_accuracy, both_macro_f1, SECOND_ROUND_MARGIN
        else:  # no finalist held: the defaults, on the first round's scores
            above[:] = False
    if len(splits) > 1:
        how = f"{accuracy.shape[1]}-fold cross-validation"
    elif in_parts:
        how = f"a 20 % validation split (its noise from {in_parts} stratified parts)"
    else:
        how = "a 20 % validation split"
    best = best_worth_its_cost(
        plans,
        above,
        accuracy,
        macro_f1,
        margin,
        defaults=defaults,
        parts=parts,
        holdout_scale=scale,
    )
    confirmation = ""
    if in_parts and not defaults[best]:
        confirmed = confirm_on_folds(texts, labels, plans, defaults, best, accuracy, macro_f1)
        if confirmed is None:  # the first default, on the split's scores
            confirmation = (
                f"; its best was not confirmed by {CONFIRMATION_FOLDS}-fold cross-validation"
            )
            best = 0
        else:
            confirmation = f", confirmed by {CONFIRMATION_FOLDS}-fold cross-validation"
            plans, defaults, accuracy, macro_f1 = confirmed
            best = int(np.flatnonzero(~defaults)[0])
    means = accuracy.mean(axis=1), macro_f1.mean(axis=1)
    validation = {
        "accuracy": round(float(means[0][best]), 4),
        "macro_f1": round(float(means[1][best]), 4),
        "bar_accuracy": round(float(means[0][defaults].max()), 4),
        "bar_macro_f1": round(float(means[1][defaults].max()), 4),
        "folds": accuracy.shape[1],
    }
    chosen_by = f"best of {len(candidates)} by {how} of the training rows{confirmation}"
    return replace(plans[best], chosen_by=chosen_by, validation=validation)


def confirm_on_folds(
    texts: Sequence[str],
    labels: Sequence[str],
    plans: Sequence[TrainingPlan],
    defaults: np.ndarray,
    best: int,
    accuracy: np.ndarray,
    macro_f1: np.ndarray,
) -> tuple[list[TrainingPlan], np.ndarray, np.ndarray, np.ndarray] | None:
    """Score the plan one split chose, and the default(s) that set its bar, on CONFIRMATION_FOLDS
    folds of all the training rows; return them and their scores if it clears the bar there too.

    The split chose the best of a dozen plans on a fifth of the rows, and its lead was partly
    luck (the holdout then ranked a few of those plans below `LinearSVC()`); every training row
    validates once here, with the first round's margin and the holdout's, the noise measured
    on VALIDATION_PARTS parts of each fold's rows.
    """
    keep = np.zeros(len(plans), dtype=bool)
    keep[[best, *bar_setters(accuracy, macro_f1, defaults)]] = True
    finalists = [plan for plan, kept in zip(plans, keep, strict=True) if kept]
    folds = cross_validation_folds(labels, folds=CONFIRMATION_FOLDS, seed=1)
    # Each fold's rows scored in parts too: three folds alone give a standard deviation from
    # three numbers, which rejected a lead the holdout then showed (docs/classifier.md).
    fold_accuracy, fold_macro_f1, parts = fold_scores(
        texts, labels, finalists, folds, parts=VALIDATION_PARTS
    )
    validated = sum(len(fold.holdout_rows) for fold in folds) / len(folds)
    above = plans_above_the_bar(
        fold_accuracy,
        fold_macro_f1,
        defaults[keep],
        FIRST_ROUND_MARGIN,
        parts=parts,
        holdout_scale=holdout_scale(len(labels), validated / VALIDATION_PARTS),
    )
    return (finalists, defaults[keep], fold_accuracy, fold_macro_f1) if above.any() else None


def fold_scores(
    texts: Sequence[str],
    labels: Sequence[str],
    plans: Sequence[TrainingPlan],
    splits: Sequence[HoldoutSplit],
    *,
    parts: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Each plan's accuracy and macro-F1 on each split's validation rows (plans x splits), and
    with `parts`, the same two on that many stratified parts of each split's validation rows
    (2 x plans x (splits x parts)), to measure their noise by."""

    def score(
        plan: TrainingPlan, fit_on: Any, check: Any, fit_labels: Any, expected: Any, parts: Any
    ) -> Any:
        predicted = [
            str(label) for label in fit_classifier(fit_on, fit_labels, plan).predict(check)
        ]
        return scores_in_parts(expected, predicted, parts)

    # liblinear fits without the GIL: two threads use both cores. SGD (above 30 000 rows)
    # already fits on both cores, and two of its fits at once would double the peak memory.
    threads = 2 if plans[0].solver != "sgd" else 1
    results: list[Any] = []
    with quiet_fitting(one_blas_thread=True), ThreadPoolExecutor(threads) as pool:
        # The features are the search's peak memory: the next split's are built (in this thread,
        # holding the GIL) while the pool fits the previous split's, and no more than those two
        # are held at once.
        fitting: list[Future[Any]] = []
        for split in splits:
            fits = [
                pool.submit(score, *fit) for fit in split_fits(texts, labels, plans, split, parts)
            ]
            results += [fit.result() for fit in fitting]
            fitting = fits
        results += [fit.result() for fit in fitting]
    # split x plan x (the whole split, then its parts) x (accuracy, macro-F1)
    scores = np.array(results).reshape(len(splits), len(plans), -1, 2)
    accuracy, macro_f1 = scores[:, :, 0].T
    if not parts:
        return accuracy, macro_f1, None
    by_part = np.transpose(scores[:, :, 1:], (3, 1, 0, 2)).reshape(2, len(plans), -1)
    return accuracy, macro_f1, by_part


def split_fits(
    texts: Sequence[str],
    labels: Sequence[str],
    plans: Sequence[TrainingPlan],
    split: HoldoutSplit,
    parts: int,
) -> list[tuple[Any, ...]]:
    """What `fold_scores` fits and scores on one split: per plan, the plan, the features to fit
    on and to predict (one vectorizer per distinct feature setting), and the expected labels."""
    fit_labels = [labels[i] for i in split.train_rows]
    expected = [labels[i] for i in split.holdout_rows]
    rows_in_parts = stratified_parts(expected, parts=parts, seed=0) if parts else []
    features: dict[tuple[int, int, bool, bool], tuple[Any, Any]] = {}
    fits = []
    for plan in plans:
        key = (plan.ngram_max, plan.min_df, plan.sublinear_tf, plan.characters)
        if key not in features:
            vectorizer = build_vectorizer(plan)
            features[key] = (
                vectorizer.fit_transform([texts[i] for i in split.train_rows]),
                vectorizer.transform([texts[i] for i in split.holdout_rows]),
            )
        fits.append((plan, *features[key], fit_labels, expected, rows_in_parts))
    return fits
