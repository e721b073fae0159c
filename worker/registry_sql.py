"""The worker's writes to the model registry (tables owned by web.registry's migrations).

Raw SQL through the job's one SQLAlchemy asyncio engine (worker/rows.py): a run is recorded when
it starts and when it ends; a published version, its gate report, the run's outcome and, when
the gate promotes it, the champion/previous aliases and their audit rows are written in ONE
transaction, so the registry never shows a promoted version without its audit row or a run
without its version. The promotion and every audit row are the shared use cases of
`core.registry` (web runs the same code), called on this connection through `run_sync`: a
champion moved meanwhile wins, and the new version is not promoted.

Everything is per model name (core/model_names.py): a run and its version record their name, the
gate's champion is that name's, the promotion moves that name's aliases, and retention spares a
version for its own name's aliases and champions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from algorithm.ml.promotion import Champion
from core import registry
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired
from worker.config import get_settings

WORKER_ACTOR = "worker"


class SyncConnectionDatabase:
    """A SQLAlchemy connection as the `core.registry.Database` the shared use cases run on."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self._conn.execute(text(sql), params or {})
        return [tuple(row) for row in result] if result.returns_rows else []


def _json(value: Any) -> str:
    return json.dumps(value)


async def record_run_started(
    engine: AsyncEngine,
    *,
    run_id: str,
    created_at: datetime,
    requested_by: str | None = None,
    request_id: str | None = None,
    model: str = DEFAULT_MODEL,
) -> None:
    """Record (or, for a redelivered job, restart) a running training run of `model`."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO training_run (id, model, status, created_at, started_at, "
                "requested_by, request_id) VALUES (:id, :model, 'running', :created_at, now(), "
                ":requested_by, :request_id) "
                "ON CONFLICT (id) DO UPDATE SET status = 'running', started_at = now(), "
                "finished_at = NULL, error = NULL"
            ),
            {
                "id": run_id,
                "model": model,
                "created_at": created_at,
                "requested_by": requested_by,
                "request_id": request_id,
            },
        )


async def record_run_failed(engine: AsyncEngine, *, run_id: str, error: str) -> None:
    """Mark the run failed with the job's error, unless it already committed its version (a
    committed promotion is served: whatever fails after it never relabels the run)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE training_run SET status = 'failed', finished_at = now(), error = :error "
                "WHERE id = :id AND status <> 'succeeded'"
            ),
            {"id": run_id, "error": error},
        )


@dataclass(frozen=True)
class CommittedRun:
    """A run whose version, outcome and any promotion are committed (record_version)."""

    version: str
    metrics: dict[str, Any]
    promoted: bool
    model: str = DEFAULT_MODEL


async def read_committed_run(engine: AsyncEngine, run_id: str) -> CommittedRun | None:
    """The version the run committed, or None if it never got that far."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT v.version, v.metrics, r.promoted, v.model FROM training_run r "
                    "JOIN model_version v ON v.version = r.version_id "
                    "WHERE r.id = :id AND r.status = 'succeeded'"
                ),
                {"id": run_id},
            )
        ).first()
    if row is None:
        return None
    return CommittedRun(version=row[0], metrics=row[1] or {}, promoted=bool(row[2]), model=row[3])


async def read_champion(engine: AsyncEngine, model: str = DEFAULT_MODEL) -> Champion | None:
    """`model`'s champion the gate compares against, or None before its first promotion."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT v.version, v.metrics, v.fingerprint FROM model_alias a "
                    "JOIN model_version v ON v.version = a.version_id "
                    "WHERE a.model = :model AND a.name = 'champion'"
                ),
                {"model": model},
            )
        ).first()
    if row is None:
        return None
    return Champion(version=row[0], metrics=row[1] or {}, fingerprint=row[2] or {})


async def record_version(
    engine: AsyncEngine,
    *,
    run_id: str,
    manifest: dict[str, Any],
    report: dict[str, Any],
    judged_champion: str | None,
    request_id: str | None = None,
    model: str = DEFAULT_MODEL,
) -> bool:
    """Write `model`'s version, its report, the run's outcome and any promotion; True if promoted.

    The audit rows carry request_id (the request that asked for the training) and the model.
    """
    version = manifest["version"]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO model_version (version, model, run_id, created_at, rows, labels, "
                "metrics, fingerprint, sha256, library_versions) VALUES (:version, :model, "
                ":run_id, :created_at, :rows, CAST(:labels AS jsonb), CAST(:metrics AS jsonb), "
                "CAST(:fingerprint AS jsonb), CAST(:sha256 AS jsonb), CAST(:libs AS jsonb))"
            ),
            {
                "version": version,
                "model": model,
                "run_id": run_id,
                "created_at": datetime.fromisoformat(manifest["created_at"]),
                "rows": manifest["rows"],
                "labels": _json(manifest["labels"]),
                "metrics": _json(manifest["metrics"]),
                "fingerprint": _json(manifest["fingerprint"]),
                "sha256": _json(manifest["sha256"]),
                "libs": _json(manifest["library_versions"]),
            },
        )
        actor = registry.Actor(WORKER_ACTOR, request_id=request_id)
        promoted = bool(report["promoted"])
        if promoted:
            reason = f"promoted by the gate for run {run_id}: {report.get('decision', '')}"
            promoted = await conn.run_sync(
                lambda sync: registry.promote(
                    SyncConnectionDatabase(sync),
                    version=version,
                    judged_champion=judged_champion,
                    actor=actor,
                    reason=reason,
                    model=model,
                )
            )
            if not promoted:
                report = {
                    **report,
                    "promoted": False,
                    "decision": "the champion moved while this version was judged; "
                    "not promoted (move it by hand if it should be served)",
                }
        await conn.execute(
            text("UPDATE model_version SET gate = CAST(:gate AS jsonb) WHERE version = :version"),
            {"gate": _json(report), "version": version},
        )
        await conn.execute(
            text(
                "UPDATE training_run SET status = 'succeeded', finished_at = now(), "
                "rows = :rows, fingerprint = CAST(:fingerprint AS jsonb), "
                "parameters = CAST(:parameters AS jsonb), metrics = CAST(:metrics AS jsonb), "
                "version_id = :version, promoted = :promoted, error = NULL WHERE id = :id"
            ),
            {
                "id": run_id,
                "rows": manifest["rows"],
                "fingerprint": _json(manifest["fingerprint"]),
                "parameters": _json(manifest["metrics"].get("training")),
                "metrics": _json(manifest["metrics"]),
                "version": version,
                "promoted": promoted,
            },
        )
        publish_audit = {"run": run_id, "gate": report}
        await conn.run_sync(
            lambda sync: registry.audit(
                SyncConnectionDatabase(sync),
                actor,
                "version.publish",
                f"version:{version}",
                before=None,
                after=publish_audit,
                reason=str(report.get("decision", "")),
                model=model,
            )
        )
    return promoted


async def read_desired(engine: AsyncEngine, model: str = DEFAULT_MODEL) -> Desired:
    """What every replica should serve of `model` now, from one snapshot of the registry."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: registry.read_desired(SyncConnectionDatabase(sync), model)
        )


# The last `retention` distinct versions that were champion of each model concerned (champion
# moves are audited: promotions, moves, rollbacks); the current champion is the newest of them.
# Audit rows from before names existed say `default` (web/registry/migrations/0005).
_LAST_CHAMPIONS = """
SELECT model, version FROM (
    SELECT model, version, row_number() OVER (PARTITION BY model ORDER BY last DESC) AS rank
    FROM (
        SELECT model, after->>'version' AS version, max(id) AS last FROM audit_event
        WHERE target = 'alias:champion' AND after->>'version' IS NOT NULL
        AND model IN (SELECT model FROM model_version WHERE version = ANY(:candidates))
        GROUP BY model, after->>'version'
    ) moves
) ranked WHERE rank <= :retention
"""


async def versions_to_spare(
    engine: AsyncEngine, candidates: list[str], *, retention: int | None = None
) -> set[str]:
    """Of the versions beyond retention, those the registry can still serve or restore.

    Spared: every version not soft-deleted, and a soft-deleted one that has an alias of its own
    model or is among the last `retention` (default MODEL_RETENTION) champions of its own model.
    The others among the candidates are marked as having lost their files (so restore refuses
    them) in the same statement that decides they may go.
    """
    if retention is None:
        retention = get_settings().model_retention
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"WITH champions AS ({_LAST_CHAMPIONS}) "
                "UPDATE model_version v SET files_removed_at = now() "
                "WHERE v.version = ANY(:candidates) AND v.deleted_at IS NOT NULL "
                "AND v.files_removed_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM model_alias a "
                "WHERE a.model = v.model AND a.version_id = v.version) "
                "AND NOT EXISTS (SELECT 1 FROM champions c "
                "WHERE c.model = v.model AND c.version = v.version)"
            ),
            {"candidates": candidates, "retention": retention},
        )
        rows = await conn.execute(
            text(
                "SELECT version FROM model_version "
                "WHERE version = ANY(:candidates) AND files_removed_at IS NULL"
            ),
            {"candidates": candidates},
        )
        return set(rows.scalars().all())


# Each model's versions with files, newest first (version ids sort by time), ranked.
_RANKED_WITH_FILES = (
    "SELECT version, row_number() OVER (PARTITION BY model ORDER BY version DESC) AS rank "
    "FROM model_version WHERE files_removed_at IS NULL"
)


async def recent_versions(engine: AsyncEngine, candidates: list[str], retention: int) -> set[str]:
    """Of the candidates, those among the newest `retention` versions of their own model: one
    model's trainings never push another model's versions beyond retention."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT version FROM ({_RANKED_WITH_FILES} "
                "AND model IN (SELECT model FROM model_version WHERE version = ANY(:candidates))"
                ") ranked WHERE rank <= :retention AND version = ANY(:candidates)"
            ),
            {"candidates": candidates, "retention": retention},
        )
        return set(rows.scalars().all())


async def versions_beyond_retention(engine: AsyncEngine, retention: int) -> list[str]:
    """Every recorded version with files older than the newest `retention` of its own model,
    oldest first: what an object store holds, whichever worker host published it."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT version FROM ({_RANKED_WITH_FILES}) ranked "
                "WHERE rank > :retention ORDER BY version"
            ),
            {"retention": retention},
        )
        return list(rows.scalars().all())


async def versions_left_in_store(engine: AsyncEngine, limit: int) -> list[str]:
    """Up to `limit` versions whose files the registry let go but whose deletion from the object
    store has not succeeded yet, the earliest let go first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT version FROM model_version "
                "WHERE files_removed_at IS NOT NULL AND store_files_deleted_at IS NULL "
                "ORDER BY files_removed_at, version LIMIT :limit"
            ),
            {"limit": limit},
        )
        return list(rows.scalars().all())


async def record_deleted_from_store(engine: AsyncEngine, versions: list[str]) -> None:
    """Note that `versions`' files are gone from the object store."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE model_version SET store_files_deleted_at = now() "
                "WHERE version = ANY(:versions) AND store_files_deleted_at IS NULL"
            ),
            {"versions": versions},
        )


async def recorded_sha256(engine: AsyncEngine, versions: list[str]) -> dict[str, dict[str, str]]:
    """The sha256 of each file the registry recorded when each of `versions` was published."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT version, sha256 FROM model_version WHERE version = ANY(:versions)"),
            {"versions": versions},
        )
        return {str(version): dict(sha256 or {}) for version, sha256 in rows}
