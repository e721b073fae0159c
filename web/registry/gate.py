"""The promotion gate for hand-made champion moves, on the scores each version recorded.

The worker's gate (algorithm/promotion.py) can score both models on the same new rows because it
has them in memory; a move through the API compares the macro-F1 each version recorded on its
own holdout, and says so in the report. The rule is the same: not below the champion's minus
the tolerance.
"""

from __future__ import annotations

from typing import Any

from web.registry.models import ModelVersion


def gate_report(
    candidate: ModelVersion, champion: ModelVersion | None, *, tolerance: float
) -> dict[str, Any]:
    """The gate's report for moving champion from `champion` to `candidate`."""
    report: dict[str, Any] = {
        "policy": "gate",
        "basis": "recorded_holdout",
        "tolerance": tolerance,
        "candidate": {"version": candidate.version, "macro_f1": candidate.macro_f1},
        "champion": None,
    }
    if champion is None:
        return {**report, "promoted": True, "decision": "no champion yet: any version may be"}
    report["champion"] = {"version": champion.version, "macro_f1": champion.macro_f1}
    if candidate.macro_f1 is None:
        return {**report, "promoted": False,
                "decision": f"{candidate.version} has no holdout score to judge"}  # fmt: skip
    if champion.macro_f1 is None:
        return {**report, "promoted": True,
                "decision": "the champion has no holdout score: any score wins"}  # fmt: skip
    passed = candidate.macro_f1 >= champion.macro_f1 - tolerance
    verb = "is not below" if passed else "is below"
    return {
        **report,
        "promoted": passed,
        "decision": f"macro-F1 {candidate.macro_f1:.4f} {verb} the champion's "
        f"{champion.macro_f1:.4f} minus {tolerance:g}",
    }
