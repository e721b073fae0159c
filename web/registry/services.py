"""The registry's use cases as web calls them: one function each, one transaction each.

The API views and the admin actions call these. Alias moves, promotion and rollback are the
shared use cases of `core.registry` (the worker runs the same code), here inside one Django
transaction with the registry's errors mapped to web's; soft delete and restore are web's alone.
Each acts on one model name (`default` when the caller names none): its aliases, its versions
(a version of another name is not found), its retention. The desired versions go to Redis only
after the transaction commits (`transaction.on_commit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import transaction
from django.utils import timezone

from core import registry
from core.model_names import DEFAULT_MODEL
from core.registry import UNSET, Actor
from web.config import get_settings
from web.errors import Conflict, GateFailed, NotFound
from web.registry.database import DjangoDatabase
from web.registry.models import ModelVersion
from web.registry.selectors import last_champions
from web.registry.serving import announce_desired

__all__ = [
    "UNSET",
    "Actor",
    "move_alias",
    "restore_version",
    "rollback_champion",
    "soft_delete_version",
]


@contextmanager
def _registry_errors() -> Iterator[None]:
    """The shared use cases' refusals, answered in web's error shape."""
    try:
        yield
    except registry.GateRefused as exc:
        raise GateFailed(str(exc), report=exc.report) from exc
    except registry.Conflict as exc:
        raise Conflict(str(exc), **exc.extra) from exc
    except (registry.AliasNotFound, registry.VersionNotFound) as exc:
        raise NotFound(str(exc)) from exc


def _in_transaction(use_case: Callable[[DjangoDatabase], object], model: str) -> None:
    """Run a shared use case in one transaction; announce `model`'s aliases once it commits."""
    with _registry_errors(), transaction.atomic():
        use_case(DjangoDatabase())
        transaction.on_commit(lambda: announce_desired(model))


def move_alias(
    *,
    alias: str,
    version: str | None,
    reason: str,
    actor: Actor,
    expected_version: str | None = UNSET,
    force: bool = False,
    model: str = DEFAULT_MODEL,
) -> None:
    """Point `model`'s `alias` at `version`; a champion move passes the gate unless forced."""
    tolerance = get_settings().promotion_tolerance
    _in_transaction(
        lambda db: registry.move_alias(
            db,
            alias=alias,
            version=version,
            reason=reason,
            actor=actor,
            expected_version=expected_version,
            force=force,
            tolerance=tolerance,
            model=model,
        ),
        model,
    )


def rollback_champion(
    *,
    reason: str,
    actor: Actor,
    expected_version: str | None = UNSET,
    model: str = DEFAULT_MODEL,
) -> None:
    """Swap `model`'s champion and previous: the version served before is the champion again."""
    _in_transaction(
        lambda db: registry.rollback_champion(
            db, reason=reason, actor=actor, expected_version=expected_version, model=model
        ),
        model,
    )


def soft_delete_version(
    *, version: str, reason: str, actor: Actor, model: str = DEFAULT_MODEL
) -> ModelVersion:
    """Hide a version (restorable); refused for one with an alias or a recent champion."""
    with _registry_errors(), transaction.atomic():
        db = DjangoDatabase()
        locked = registry.lock_aliases(db, model)
        target = _lock_version(version, model)
        if target.deleted_at is not None:
            raise Conflict(f"Version {version} is deleted already; POST restore/ to undo it.")
        names = sorted(name for name, named in locked.items() if named == version)
        if names:
            raise Conflict(f"Version {version} is the {', '.join(names)}: move the alias first.")
        retention = get_settings().model_retention
        if version in last_champions(retention, model):
            raise Conflict(
                f"Version {version} is among the last {retention} champions "
                "(MODEL_RETENTION): it stays for rollback."
            )
        target.deleted_at = timezone.now()
        target.save(update_fields=["deleted_at"])
        _audit_deleted(db, actor, version, deleted=True, reason=reason, model=model)
    return target


def restore_version(
    *, version: str, reason: str, actor: Actor, model: str = DEFAULT_MODEL
) -> ModelVersion:
    """Undo a soft delete, while the version's files are still on the model volume."""
    with transaction.atomic():
        target = _lock_version(version, model)
        if target.deleted_at is None:
            raise Conflict(f"Version {version} is not deleted.")
        if target.files_removed_at is not None:
            raise Conflict(
                f"Version {version}'s files were removed after retention "
                f"({target.files_removed_at:%Y-%m-%d %H:%M} UTC); it cannot be restored."
            )
        target.deleted_at = None
        target.save(update_fields=["deleted_at"])
        _audit_deleted(DjangoDatabase(), actor, version, deleted=False, reason=reason, model=model)
    return target


def _lock_version(version: str, model: str) -> ModelVersion:
    found = ModelVersion.objects.select_for_update().filter(version=version, model=model).first()
    if found is None:
        owner = "" if model == DEFAULT_MODEL else f" of model {model!r}"
        raise NotFound(f"No model version {version!r}{owner}.")
    return found


def _audit_deleted(
    db: DjangoDatabase, actor: Actor, version: str, *, deleted: bool, reason: str, model: str
) -> None:
    action = "version.delete" if deleted else "version.restore"
    registry.audit(
        db,
        actor,
        action,
        f"version:{version}",
        before={"deleted": not deleted},
        after={"deleted": deleted},
        reason=reason,
        model=model,
    )
