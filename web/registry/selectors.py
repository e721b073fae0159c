"""Read-only queries of the registry, shared by the API views and the admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from web.registry.models import Alias, AliasName, AuditEvent, ModelVersion
from web.registry.serving import read_desired, read_replica_reports


def versions(
    *,
    alias: str | None = None,
    deleted: bool | None = False,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[ModelVersion]:
    """Versions, newest first; live ones only unless `deleted` is True (only) or None (all)."""
    found = ModelVersion.objects.select_related("run").prefetch_related("aliases")
    if alias is not None:
        found = found.filter(aliases__name=alias)
    if deleted is not None:
        found = found.filter(deleted_at__isnull=not deleted)
    if created_after is not None:
        found = found.filter(created_at__gte=created_after)
    if created_before is not None:
        found = found.filter(created_at__lt=created_before)
    return found.order_by("-created_at", "-version")


def last_champions(count: int) -> list[str]:
    """The last `count` distinct versions that were champion, newest first (current included)."""
    seen: list[str] = []
    current = Alias.objects.filter(name=AliasName.CHAMPION).values_list("version_id", flat=True)
    moves = (
        AuditEvent.objects.filter(target=f"alias:{AliasName.CHAMPION}")
        .order_by("-id")
        .values_list("after__version", flat=True)
    )
    for version in [*current, *moves.iterator()]:
        if isinstance(version, str) and version not in seen:
            seen.append(version)
            if len(seen) >= count:
                break
    return seen


def alias_history(name: str) -> QuerySet[AuditEvent]:
    """Every change of one alias, newest first: what was served (or named) from when."""
    return AuditEvent.objects.filter(target=f"alias:{name}").order_by("-id")


def alias_overview() -> dict[str, Any]:
    """Desired versions (PostgreSQL), what Redis tells the replicas, and what each one loaded."""
    rows = {row.name: row for row in Alias.objects.all()}
    replicas = read_replica_reports()
    aliases = {}
    for name in AliasName.values:
        row = rows.get(name)
        aliases[name] = {
            "version": row.version_id if row else None,
            "updated_by": row.updated_by if row else None,
            "updated_at": row.updated_at if row else None,
        }
    champion = aliases[AliasName.CHAMPION]["version"]
    compared = sum(int((r.get("shadow") or {}).get("compared", 0)) for r in replicas)
    agreed = sum(int((r.get("shadow") or {}).get("agreed", 0)) for r in replicas)
    aliases[AliasName.CHALLENGER]["shadow"] = {
        "compared": compared,
        "agreed": agreed,
        "agreement_rate": round(agreed / compared, 4) if compared else None,
    }
    return {
        "aliases": aliases,
        "announced": read_desired(),
        "replicas": [
            {
                "replica": r.get("replica"),
                "version": r.get("version"),
                "challenger": r.get("challenger"),
                "serves_champion": r.get("version") == champion,
                "error": r.get("error"),
                "error_version": r.get("error_version"),
                "loaded_at": r.get("loaded_at"),
                "shadow": r.get("shadow"),
            }
            for r in replicas
        ],
        "in_sync": all(r.get("version") == champion for r in replicas),
    }


def audit_events(
    *, actor: str | None = None, action: str | None = None, target: str | None = None
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered by exact actor, action or target."""
    found = AuditEvent.objects.all()
    if actor is not None:
        found = found.filter(actor=actor)
    if action is not None:
        found = found.filter(action=action)
    if target is not None:
        found = found.filter(target=target)
    return found.order_by("-id")
