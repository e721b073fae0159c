"""The promotion gate: does a new version deserve to replace the champion?

A plain function over numbers and models, no queue or database. The rule itself is
`core.gate.judge` (hand-made moves in web use the same): the candidate passes when its macro-F1
is not below the champion's minus the tolerance. Both are scored on the same held-out
rows that neither was trained on when there are at least `min_rows` of them (rows newer than the
champion's data that the candidate's evaluation model held out); otherwise the gate compares the
macro-F1 each recorded on its own holdout. The report says which basis it used, with the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from algorithm.ml.evaluation import score_predictions
from algorithm.ml.training import TrainedModel, predict_labels
from core.gate import judge, recorded_macro_f1

Policy = Literal["gate", "auto", "manual"]
POLICIES: tuple[Policy, ...] = ("gate", "auto", "manual")


@dataclass(frozen=True)
class Champion:
    """What the registry knows of the version served now."""

    version: str
    metrics: dict[str, Any]
    fingerprint: dict[str, Any]


@dataclass
class SharedRows:
    """Held-out rows of the new run that the champion never saw, with the candidate's answers."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    candidate_predictions: list[str] = field(default_factory=list)


def decide_promotion(
    *,
    policy: Policy,
    tolerance: float,
    candidate_version: str,
    candidate_metrics: dict[str, Any],
    champion: Champion | None,
    shared: SharedRows,
    load_champion: Callable[[], TrainedModel],
    min_rows: int,
) -> dict[str, Any]:
    """Return the gate's report; `report["promoted"]` is the decision."""
    report: dict[str, Any] = {
        "policy": policy,
        "tolerance": tolerance,
        "candidate": {"version": candidate_version},
        "champion": {"version": champion.version} if champion else None,
    }
    if champion is None:
        return {
            **report,
            "promoted": True,
            "basis": "first_version",
            "decision": "no champion yet: the first version becomes champion",
        }
    if policy == "auto":
        return {
            **report,
            "promoted": True,
            "basis": "policy",
            "decision": "PROMOTION_POLICY=auto promotes every version",
        }
    if policy == "manual":
        return {
            **report,
            "promoted": False,
            "basis": "policy",
            "decision": "PROMOTION_POLICY=manual: move the champion alias by hand",
        }
    candidate_f1: float | None
    champion_f1: float | None
    if len(shared.texts) >= min_rows:
        candidate_f1 = _macro_f1(shared.labels, shared.candidate_predictions)
        champion_f1 = _macro_f1(shared.labels, predict_labels(load_champion(), shared.texts))
        basis = "shared_holdout"
        report["rows"] = len(shared.texts)
    else:
        candidate_f1 = recorded_macro_f1(candidate_metrics)
        champion_f1 = recorded_macro_f1(champion.metrics)
        basis = "recorded_holdout"
        report["rows"] = None
        report["shared_rows"] = len(shared.texts)
    report.update(basis=basis, min_rows=min_rows)
    report["candidate"]["macro_f1"] = candidate_f1
    report["champion"]["macro_f1"] = champion_f1
    return {**report, **judge(candidate_f1, champion_f1, tolerance)}


def _macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float:
    return round(float(score_predictions(expected, predicted)["macro_f1"]), 6)
