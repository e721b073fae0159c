"""The promotion gate's rule, declared once for every place that moves the champion.

A candidate passes when its macro-F1 is not below the champion's minus the tolerance. The worker
scores both versions on the same new rows when it has enough of them (algorithm/ml/promotion.py);
a move by hand, and the worker without enough rows, compare the macro-F1 each version recorded on
its own holdout (`recorded_report`). Either way the decision comes from `judge`.
"""

from __future__ import annotations

from typing import Any


def recorded_macro_f1(metrics: dict[str, Any] | None) -> float | None:
    """The macro-F1 a version recorded on its holdout, or None when it had no holdout."""
    value = (metrics or {}).get("macro_f1")
    return float(value) if isinstance(value, int | float) else None


def judge(
    candidate_f1: float | None, champion_f1: float | None, tolerance: float
) -> dict[str, Any]:
    """The gate's rule on two scores: `promoted` and a sentence saying why."""
    if candidate_f1 is None:
        return {"promoted": False, "decision": "the new version has no holdout score to judge"}
    if champion_f1 is None:
        return {"promoted": True, "decision": "the champion has no holdout score: any score wins"}
    passed = candidate_f1 >= champion_f1 - tolerance
    verb = "is not below" if passed else "is below"
    return {
        "promoted": passed,
        "decision": f"macro-F1 {candidate_f1:.4f} {verb} the champion's {champion_f1:.4f} "
        f"minus {tolerance:g}",
    }


def recorded_report(
    *,
    candidate: str,
    candidate_metrics: dict[str, Any] | None,
    champion: str | None,
    champion_metrics: dict[str, Any] | None,
    tolerance: float,
) -> dict[str, Any]:
    """The gate's report for making `candidate` champion, on the scores both versions recorded."""
    candidate_f1 = recorded_macro_f1(candidate_metrics)
    report: dict[str, Any] = {
        "policy": "gate",
        "basis": "recorded_holdout",
        "tolerance": tolerance,
        "candidate": {"version": candidate, "macro_f1": candidate_f1},
        "champion": None,
    }
    if champion is None:
        return {**report, "promoted": True, "decision": "no champion yet: any version may be"}
    champion_f1 = recorded_macro_f1(champion_metrics)
    report["champion"] = {"version": champion, "macro_f1": champion_f1}
    return {**report, **judge(candidate_f1, champion_f1, tolerance)}
