"""The registry's use cases: one function each, one transaction each, with its audit row.

The API views, the admin actions and the tests all call these, so no entry point can skip the
gate, the audit row or the `expected_version` check. Alias rows are locked (SELECT ... FOR
UPDATE, always in name order, before any version row) so two concurrent moves serialize: the
second sees the first's result and answers 409 if it expected the old version. The desired
versions go to Redis only after the transaction commits (`transaction.on_commit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from web.config import get_settings
from web.errors import Conflict, GateFailed, NotFound
from web.registry.gate import gate_report
from web.registry.models import Alias, AliasName, AuditEvent, ModelVersion
from web.registry.selectors import last_champions
from web.registry.serving import announce_desired


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # `expected_version` not sent (None means "expected no version")


@dataclass(frozen=True)
class Actor:
    """Who asks, for the audit row: `token:<name>`, `admin:<user>`, `worker`."""

    name: str
    request_id: str | None = None


def move_alias(
    *,
    alias: str,
    version: str | None,
    reason: str,
    actor: Actor,
    expected_version: str | None = UNSET,
    force: bool = False,
) -> Alias:
    """Point `alias` at `version`; a champion move passes the gate unless forced."""
    if alias not in AliasName.values:
        raise NotFound(f"No alias {alias!r}: use champion, previous or challenger.")
    if version is None and alias == AliasName.CHAMPION:
        raise Conflict("The champion cannot be cleared: move it to another version.")
    with transaction.atomic():
        locked = _lock_aliases()
        current = locked[alias]
        _check_expected(current, expected_version)
        target = _live_version(version) if version is not None else None
        if current.version_id == version:
            return current  # already there: nothing changes, nothing to audit
        if alias == AliasName.CHAMPION:
            assert target is not None
            report = gate_report(target, current.version,
                                 tolerance=get_settings().promotion_tolerance)  # fmt: skip
            if not report["promoted"] and not force:
                raise GateFailed(f"The gate refuses {version}: {report['decision']}. "
                                 "An admin may send force: true with a reason.",
                                 report=report)  # fmt: skip
            if current.version_id is not None:
                _set(locked[AliasName.PREVIOUS], current.version_id, actor=actor,
                     action="alias.move", reason=reason)  # fmt: skip
        action = "alias.force_move" if force and alias == AliasName.CHAMPION else "alias.move"
        _set(current, version, actor=actor, action=action, reason=reason)
        transaction.on_commit(announce_desired)
    return current


def rollback_champion(
    *, reason: str, actor: Actor, expected_version: str | None = UNSET
) -> dict[str, Alias]:
    """Swap champion and previous: the version served before becomes the champion again."""
    with transaction.atomic():
        locked = _lock_aliases()
        champion, previous = locked[AliasName.CHAMPION], locked[AliasName.PREVIOUS]
        _check_expected(champion, expected_version)
        if previous.version_id is None:
            raise Conflict("There is no previous version to roll back to.")
        back_to = _live_version(previous.version_id)
        rolled_back_from = champion.version_id
        _set(champion, back_to.version, actor=actor, action="alias.rollback", reason=reason)
        _set(previous, rolled_back_from, actor=actor, action="alias.rollback", reason=reason)
        transaction.on_commit(announce_desired)
    return {"champion": champion, "previous": previous}


def soft_delete_version(*, version: str, reason: str, actor: Actor) -> ModelVersion:
    """Hide a version (restorable); refused for one with an alias or a recent champion."""
    with transaction.atomic():
        locked = _lock_aliases()
        target = _lock_version(version)
        if target.deleted_at is not None:
            raise Conflict(f"Version {version} is deleted already; POST restore/ to undo it.")
        names = sorted(name for name, row in locked.items() if row.version_id == version)
        if names:
            raise Conflict(f"Version {version} is the {', '.join(names)}: move the alias first.")
        retention = get_settings().model_retention
        if version in last_champions(retention):
            raise Conflict(f"Version {version} is among the last {retention} champions "
                           "(MODEL_RETENTION): it stays for rollback.")  # fmt: skip
        target.deleted_at = timezone.now()
        target.save(update_fields=["deleted_at"])
        _audit(actor, "version.delete", f"version:{version}", before={"deleted": False},
               after={"deleted": True}, reason=reason)  # fmt: skip
    return target


def restore_version(*, version: str, reason: str, actor: Actor) -> ModelVersion:
    """Undo a soft delete, while the version's files are still on the model volume."""
    with transaction.atomic():
        target = _lock_version(version)
        if target.deleted_at is None:
            raise Conflict(f"Version {version} is not deleted.")
        if target.files_removed_at is not None:
            raise Conflict(f"Version {version}'s files were removed after retention "
                           f"({target.files_removed_at:%Y-%m-%d %H:%M} UTC); it cannot be "
                           "restored.")  # fmt: skip
        target.deleted_at = None
        target.save(update_fields=["deleted_at"])
        _audit(actor, "version.restore", f"version:{version}", before={"deleted": True},
               after={"deleted": False}, reason=reason)  # fmt: skip
    return target


def _lock_aliases() -> dict[str, Alias]:
    """Every alias row, created if missing, locked in name order (no deadlocks between moves)."""
    Alias.objects.bulk_create([Alias(name=name) for name in AliasName.values],
                              ignore_conflicts=True)  # fmt: skip
    rows = Alias.objects.select_for_update(of=("self",)).select_related("version").order_by("name")
    return {row.name: row for row in rows}


def _lock_version(version: str) -> ModelVersion:
    found = ModelVersion.objects.select_for_update().filter(version=version).first()
    if found is None:
        raise NotFound(f"No model version {version!r}.")
    return found


def _live_version(version: str) -> ModelVersion:
    target = _lock_version(version)
    if target.deleted_at is not None:
        raise Conflict(f"Version {version} is deleted; restore it before giving it an alias.")
    return target


def _check_expected(alias: Alias, expected: str | None) -> None:
    if expected is not UNSET and alias.version_id != expected:
        raise Conflict(f"{alias.name} is {alias.version_id or 'unset'}, not {expected or 'unset'}: "
                       "someone moved it since you looked.",
                       current_version=alias.version_id)  # fmt: skip


def _set(alias: Alias, version: str | None, *, actor: Actor, action: str, reason: str) -> None:
    before = alias.version_id
    alias.version_id = version
    alias.updated_by = actor.name
    alias.updated_at = timezone.now()
    alias.save()
    _audit(actor, action, f"alias:{alias.name}", before={"version": before},
           after={"version": version}, reason=reason)  # fmt: skip


def _audit(
    actor: Actor, action: str, target: str, *, before: Any, after: Any, reason: str
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.name, action=action, target=target, before=before, after=after,
        reason=reason, request_id=actor.request_id,
    )  # fmt: skip
