"""Read-only queries of the registry, shared by the API views and the admin.

Everything here is per model name (core/model_names.py): a name's versions, its alias history,
its audit events. `alias_overview` and `model_summaries` add what Redis says the replicas serve.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from core.model_names import DEFAULT_MODEL
from core.serving_protocol import ReplicaReport, ShadowCounts, served_version
from web.registry.models import (
    Alias,
    AliasName,
    AuditEvent,
    ModelVersion,
    RegisteredModel,
    TrainingRun,
)
from web.registry.serving import read_desired, read_many_desired, read_replica_reports


def model_names(allowed: frozenset[str] | None = None) -> QuerySet[RegisteredModel]:
    """The registered names (`allowed` only, when given), by name."""
    found = RegisteredModel.objects.all()
    if allowed is not None:
        found = found.filter(name__in=allowed)
    return found.order_by("name")


def model_exists(name: str) -> bool:
    """Whether `name` is registered (`default` always is)."""
    return name == DEFAULT_MODEL or RegisteredModel.objects.filter(name=name).exists()


def runs(
    *, model: str | None = None, allowed: frozenset[str] | None = None
) -> QuerySet[TrainingRun]:
    """Training runs, newest first: of `model`, else of the `allowed` names, else all."""
    found = TrainingRun.objects.all()
    if model is not None:
        found = found.filter(model=model)
    elif allowed is not None:
        found = found.filter(model__in=allowed)
    return found.order_by("-created_at", "-id")


def versions(
    *,
    model: str = DEFAULT_MODEL,
    alias: str | None = None,
    deleted: bool | None = False,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[ModelVersion]:
    """`model`'s versions, newest first; live ones only unless `deleted` is True (only) or None."""
    found = (
        ModelVersion.objects.filter(model=model).select_related("run").prefetch_related("aliases")
    )
    if alias is not None:
        found = found.filter(aliases__name=alias, aliases__model=model)
    if deleted is not None:
        found = found.filter(deleted_at__isnull=not deleted)
    if created_after is not None:
        found = found.filter(created_at__gte=created_after)
    if created_before is not None:
        found = found.filter(created_at__lt=created_before)
    return found.order_by("-created_at", "-version")


def last_champions(count: int, model: str = DEFAULT_MODEL) -> list[str]:
    """The last `count` distinct versions that were `model`'s champion, newest first."""
    seen: list[str] = []
    current = Alias.objects.filter(model=model, name=AliasName.CHAMPION).values_list(
        "version_id", flat=True
    )
    moves = (
        AuditEvent.objects.filter(model=model, target=f"alias:{AliasName.CHAMPION}")
        .order_by("-id")
        .values_list("after__version", flat=True)
    )
    for version in [*current, *moves.iterator()]:
        if isinstance(version, str) and version not in seen:
            seen.append(version)
            if len(seen) >= count:
                break
    return seen


def alias_history(name: str, model: str = DEFAULT_MODEL) -> QuerySet[AuditEvent]:
    """Every change of one alias of `model`, newest first: what was served (or named) from when."""
    return AuditEvent.objects.filter(model=model, target=f"alias:{name}").order_by("-id")


def audit_events(
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    model: str | None = None,
    allowed: frozenset[str] | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered by exact actor, action, target or model.

    With `allowed` (a token limited to some names) only events of those names: changes of no
    model (tokens) are not theirs to see.
    """
    found = AuditEvent.objects.all()
    if actor is not None:
        found = found.filter(actor=actor)
    if action is not None:
        found = found.filter(action=action)
    if target is not None:
        found = found.filter(target=target)
    if model is not None:
        found = found.filter(model=model)
    if allowed is not None:
        found = found.filter(model__in=allowed)
    return found.order_by("-id")


def _replica_entry(report: ReplicaReport, model: str, champion: str | None) -> dict[str, Any]:
    """One replica as the alias list shows it for `model`; holding it or not (not a failure)."""
    held = report.models.get(model)
    holds = held is not None or model == DEFAULT_MODEL
    state: Any = held if held is not None else report
    return {
        "replica": report.replica,
        "holds_model": holds,
        "version": served_version(report, model),
        "challenger": state.challenger if holds else None,
        "serves_champion": served_version(report, model) == champion if holds else None,
        "error": state.error if holds else None,
        "error_version": state.error_version if holds else None,
        "loaded_at": state.loaded_at if holds else None,
        "memory_bytes": held.memory_bytes if held is not None else None,
        "last_used_at": held.last_used_at if held is not None else None,
        "pinned": held.pinned if held is not None else None,
        "shadow": shadow_counts(report, model).model_dump() if holds else None,
    }


def shadow_counts(report: ReplicaReport, model: str) -> ShadowCounts:
    """How often `model`'s challenger agreed with its champion on this replica (zero when it
    has no challenger, or does not hold the model)."""
    if model == DEFAULT_MODEL:  # where every replica has reported it since before names
        return report.shadow
    held = report.models.get(model)
    return held.shadow if held is not None else ShadowCounts()


def alias_overview(model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """`model`'s desired versions (PostgreSQL), what Redis announces, what each replica loaded.

    A replica that has not loaded a name other than `default` is listed as not holding it
    (it loads the champion on its first request there); `in_sync` counts those holding it.
    """
    rows = {row.name: row for row in Alias.objects.filter(model=model)}
    reports = read_replica_reports()
    aliases = {}
    for name in AliasName.values:
        row = rows.get(name)
        aliases[name] = {
            "version": row.version_id if row else None,
            "updated_by": row.updated_by if row else None,
            "updated_at": row.updated_at if row else None,
        }
    champion = aliases[AliasName.CHAMPION]["version"]
    counted = [shadow_counts(report, model) for report in reports]
    compared = sum(counts.compared for counts in counted)
    agreed = sum(counts.agreed for counts in counted)
    aliases[AliasName.CHALLENGER]["shadow"] = {
        "compared": compared,
        "agreed": agreed,
        "agreement_rate": round(agreed / compared, 4) if compared else None,
    }
    replicas = [_replica_entry(report, model, champion) for report in reports]
    announced = read_desired(model)
    return {
        "model": model,
        "aliases": aliases,
        "announced": announced.model_dump() if announced else None,
        "replicas": replicas,
        "in_sync": all(r["serves_champion"] for r in replicas if r["holds_model"]),
    }


def model_summaries(names: Iterable[RegisteredModel]) -> list[dict[str, Any]]:
    """Each name with its champion and challenger, what Redis announces, and how many replicas
    hold it and serve its champion (one query, one MGET, one scan of the reports)."""
    listed = list(names)
    keys = [found.name for found in listed]
    aliases: dict[tuple[str, str], str | None] = {
        (model, alias): version
        for model, alias, version in Alias.objects.filter(model__in=keys).values_list(
            "model", "name", "version_id"
        )
    }
    announced = read_many_desired(keys) if keys else {}
    reports = read_replica_reports()
    summaries = []
    for found in listed:
        champion = aliases.get((found.name, AliasName.CHAMPION))
        holding = [r for r in reports if found.name in r.models or found.name == DEFAULT_MODEL]
        serving = [r for r in holding if served_version(r, found.name) == champion]
        desired = announced.get(found.name)
        summaries.append(
            {
                "name": found.name,
                "created_at": found.created_at,
                "created_by": found.created_by,
                "champion": champion,
                "challenger": aliases.get((found.name, AliasName.CHALLENGER)),
                "announced": desired.champion if desired else None,
                "replicas_holding": len(holding),
                "replicas_serving_champion": len(serving),
                "in_sync": len(serving) == len(holding),
            }
        )
    return summaries
