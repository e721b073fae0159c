"""The registry's alias use cases in raw SQL, written once for web and the worker.

Moving an alias, promoting a version ("make it champion if the champion is still X"), rolling
back, and the audit row of each change all run here, inside the caller's transaction: web's
services call them through Django's connection, the worker through its SQLAlchemy connection
(`AsyncConnection.run_sync`). Both only adapt `Database.execute`. Alias rows are locked (FOR
UPDATE, in name order, before any version row) so two concurrent moves serialize: the second
sees the first's result. The tables belong to web's migrations (web/registry/models.py).

Every use case acts on one model name (core/model_names.py; `default` when the caller names
none): its aliases, its versions, and audit rows that say which model they concern. A version of
another model is not found. Names themselves are registered (`register_model`) by whoever first
writes under them.

Errors are plain (`AliasNotFound`, `VersionNotFound`, `Conflict`, `GateRefused`); each service
maps them to its own answers. The caller announces the new desired state after its commit
(`read_desired` gives it from the same tables).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from core import gate
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
ALIASES = (CHALLENGER, CHAMPION, PREVIOUS)  # name order: the order rows are locked in


class Database(Protocol):
    """One connection inside an open transaction; SQL uses `:name` parameters."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (empty for statements without rows)."""
        ...


class RegistryError(Exception):
    """A use case refused: the message says why and what to do."""


class AliasNotFound(RegistryError):
    pass


class VersionNotFound(RegistryError):
    pass


class Conflict(RegistryError):
    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra  # e.g. the alias's `current_version`, for the answer


class GateRefused(RegistryError):
    def __init__(self, message: str, *, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # `expected_version` not sent (None means "expected no version")


@dataclass(frozen=True)
class Actor:
    """Who asks, for the audit row: `token:<name>`, `admin:<user>`, `worker`."""

    name: str
    request_id: str | None = None


def register_model(db: Database, model: str, *, actor: Actor) -> bool:
    """Record `model` as a name (audited); False when it existed already. `model` is valid."""
    created = db.execute(
        "INSERT INTO registered_model (name, created_at, created_by) VALUES (:model, now(), :by) "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        {"model": model, "by": actor.name},
    )
    if created:
        audit(
            db,
            actor,
            "model.create",
            f"model:{model}",
            before=None,
            after={"name": model},
            reason="",
            model=model,
        )
    return bool(created)


def model_exists(db: Database, model: str) -> bool:
    return bool(db.execute("SELECT 1 FROM registered_model WHERE name = :model", {"model": model}))


def lock_aliases(db: Database, model: str = DEFAULT_MODEL) -> dict[str, str | None]:
    """Every alias of `model` (created if missing) and its version, rows locked in name order."""
    db.execute(
        "INSERT INTO model_alias (model, name) SELECT :model, unnest(CAST(:names AS text[])) "
        "ON CONFLICT (model, name) DO NOTHING",
        {"model": model, "names": list(ALIASES)},
    )
    rows = db.execute(
        "SELECT name, version_id FROM model_alias WHERE model = :model ORDER BY name FOR UPDATE",
        {"model": model},
    )
    return {name: version for name, version in rows}


def move_alias(
    db: Database,
    *,
    alias: str,
    version: str | None,
    reason: str,
    actor: Actor,
    expected_version: str | None = UNSET,
    force: bool = False,
    tolerance: float,
    model: str = DEFAULT_MODEL,
) -> bool:
    """Point `alias` at `version`; a champion move passes the gate unless forced.

    False when the alias was there already (nothing changes, nothing is audited).
    """
    if alias not in ALIASES:
        raise AliasNotFound(f"No alias {alias!r}: use champion, previous or challenger.")
    if version is None and alias == CHAMPION:
        raise Conflict("The champion cannot be cleared: move it to another version.")
    locked = lock_aliases(db, model)
    current = locked[alias]
    check_expected(alias, current, expected_version)
    if version is not None:
        lock_live_version(db, version, model)
    if current == version:
        return False
    action = "alias.move"
    if alias == CHAMPION:
        assert version is not None
        report = gate.recorded_report(
            candidate=version,
            candidate_metrics=_metrics(db, version),
            champion=current,
            champion_metrics=_metrics(db, current) if current else None,
            tolerance=tolerance,
        )
        if not report["promoted"] and not force:
            raise GateRefused(
                f"The gate refuses {version}: {report['decision']}. "
                "An admin may send force: true with a reason.",
                report=report,
            )
        if force:
            action = "alias.force_move"
        if current is not None:
            set_alias(
                db,
                PREVIOUS,
                current,
                before=locked[PREVIOUS],
                actor=actor,
                action="alias.move",
                reason=reason,
                model=model,
            )
    set_alias(
        db, alias, version, before=current, actor=actor, action=action, reason=reason, model=model
    )
    return True


def promote(
    db: Database,
    *,
    version: str,
    judged_champion: str | None,
    actor: Actor,
    reason: str,
    model: str = DEFAULT_MODEL,
) -> bool:
    """Make `version` champion (the old one previous) if the champion is still `judged_champion`.

    False when someone moved the champion meanwhile: that move wins.
    """
    locked = lock_aliases(db, model)
    if locked[CHAMPION] != judged_champion:
        return False
    if judged_champion is not None:
        set_alias(
            db,
            PREVIOUS,
            judged_champion,
            before=locked[PREVIOUS],
            actor=actor,
            action="alias.move",
            reason=reason,
            model=model,
        )
    set_alias(
        db,
        CHAMPION,
        version,
        before=judged_champion,
        actor=actor,
        action="alias.move",
        reason=reason,
        model=model,
    )
    return True


def rollback_champion(
    db: Database,
    *,
    reason: str,
    actor: Actor,
    expected_version: str | None = UNSET,
    model: str = DEFAULT_MODEL,
) -> None:
    """Swap champion and previous: the version served before becomes the champion again."""
    locked = lock_aliases(db, model)
    champion, previous = locked[CHAMPION], locked[PREVIOUS]
    check_expected(CHAMPION, champion, expected_version)
    if previous is None:
        raise Conflict("There is no previous version to roll back to.")
    lock_live_version(db, previous, model)
    for alias, version, before in ((CHAMPION, previous, champion), (PREVIOUS, champion, previous)):
        set_alias(
            db,
            alias,
            version,
            before=before,
            actor=actor,
            action="alias.rollback",
            reason=reason,
            model=model,
        )


def check_expected(alias: str, current: str | None, expected: str | None) -> None:
    """Refuse when the caller expected another version (Conflict names the current one)."""
    if expected is not UNSET and current != expected:
        raise Conflict(
            f"{alias} is {current or 'unset'}, not {expected or 'unset'}: "
            "someone moved it since you looked.",
            current_version=current,
        )


def lock_live_version(db: Database, version: str, model: str = DEFAULT_MODEL) -> None:
    """Lock a version row of `model`; refuse a missing or soft-deleted one."""
    rows = db.execute(
        "SELECT deleted_at FROM model_version WHERE version = :version AND model = :model "
        "FOR UPDATE",
        {"version": version, "model": model},
    )
    if not rows:
        owner = "" if model == DEFAULT_MODEL else f" of model {model!r}"
        raise VersionNotFound(f"No model version {version!r}{owner}.")
    if rows[0][0] is not None:
        raise Conflict(f"Version {version} is deleted; restore it before giving it an alias.")


def set_alias(
    db: Database,
    alias: str,
    version: str | None,
    *,
    before: str | None,
    actor: Actor,
    action: str,
    reason: str,
    model: str = DEFAULT_MODEL,
) -> None:
    """Point one (locked) alias of `model` at `version`, with its audit row."""
    db.execute(
        "UPDATE model_alias SET version_id = :version, updated_by = :actor, updated_at = now() "
        "WHERE model = :model AND name = :name",
        {"version": version, "actor": actor.name, "model": model, "name": alias},
    )
    audit(
        db,
        actor,
        action,
        f"alias:{alias}",
        before={"version": before},
        after={"version": version},
        reason=reason,
        model=model,
    )


def audit(
    db: Database,
    actor: Actor,
    action: str,
    target: str,
    *,
    before: Any,
    after: Any,
    reason: str,
    model: str | None = None,
) -> None:
    """Append one audit row (the table refuses UPDATE and DELETE); `model` it concerns, if any."""
    db.execute(
        "INSERT INTO audit_event "
        "(at, actor, action, target, before, after, reason, request_id, model) "
        "VALUES (now(), :actor, :action, :target, CAST(:before AS jsonb), "
        "CAST(:after AS jsonb), :reason, :request_id, :model)",
        {
            "model": model,
            "actor": actor.name,
            "action": action,
            "target": target,
            "before": json.dumps(before),
            "after": json.dumps(after),
            "reason": reason,
            "request_id": actor.request_id,
        },
    )


def read_desired(db: Database, model: str = DEFAULT_MODEL) -> Desired:
    """Champion, challenger and a sequence number (the last audit id) from one snapshot."""
    ((champion, challenger, seq),) = db.execute(
        "SELECT (SELECT version_id FROM model_alias WHERE model = :model AND name = 'champion'), "
        "(SELECT version_id FROM model_alias WHERE model = :model AND name = 'challenger'), "
        "(SELECT coalesce(max(id), 0) FROM audit_event)",
        {"model": model},
    )
    return Desired(model=model, champion=champion, challenger=challenger, seq=int(seq))


def read_all_desired(db: Database) -> list[Desired]:
    """The desired state of every registered name (`default` always), by name, in one snapshot."""
    rows = db.execute(
        "SELECT m.name, "
        "(SELECT version_id FROM model_alias WHERE model = m.name AND name = 'champion'), "
        "(SELECT version_id FROM model_alias WHERE model = m.name AND name = 'challenger'), "
        "(SELECT coalesce(max(id), 0) FROM audit_event) "
        "FROM (SELECT name FROM registered_model UNION SELECT :default) m ORDER BY m.name",
        {"default": DEFAULT_MODEL},
    )
    return [
        Desired(model=name, champion=champion, challenger=challenger, seq=int(seq))
        for name, champion, challenger, seq in rows
    ]


def _metrics(db: Database, version: str) -> dict[str, Any] | None:
    rows = db.execute(
        "SELECT metrics FROM model_version WHERE version = :version", {"version": version}
    )
    value = rows[0][0] if rows else None
    if isinstance(value, str):  # a driver that does not decode jsonb
        value = json.loads(value)
    return value if isinstance(value, dict) else None
