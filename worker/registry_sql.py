"""The worker's writes to the model registry (tables owned by web.registry's migrations).

Raw SQL through SQLAlchemy asyncio + asyncpg, like worker/rows.py: a run is recorded when it
starts and when it ends; a published version, its gate report, the run's outcome and, when the
gate promotes it, the champion/previous aliases and their audit rows are written in ONE
transaction, so the registry never shows a promoted version without its audit row or a run
without its version. The champion alias row is locked (FOR UPDATE) and compared with the
champion the gate judged against: a move made meanwhile wins, and the new version is not promoted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from algorithm.promotion import Champion
from worker.rows import asyncpg_url

ALIASES = ("champion", "previous", "challenger")
WORKER_ACTOR = "worker"


@dataclass(frozen=True)
class DesiredState:
    champion: str | None
    challenger: str | None
    seq: int


@asynccontextmanager
async def transaction(database_url: str) -> AsyncIterator[AsyncConnection]:
    """One connection, one transaction (committed unless the block raises)."""
    engine = create_async_engine(asyncpg_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


def _json(value: Any) -> str:
    return json.dumps(value)


async def record_run_started(
    database_url: str,
    *,
    run_id: str,
    created_at: datetime,
    requested_by: str | None = None,
    request_id: str | None = None,
) -> None:
    """Record (or, for a redelivered job, restart) a running training run."""
    async with transaction(database_url) as conn:
        await conn.execute(
            text(
                "INSERT INTO training_run (id, status, created_at, started_at, requested_by, "
                "request_id) VALUES (:id, 'running', :created_at, now(), :requested_by, "
                ":request_id) "
                "ON CONFLICT (id) DO UPDATE SET status = 'running', started_at = now(), "
                "finished_at = NULL, error = NULL"
            ),
            {"id": run_id, "created_at": created_at, "requested_by": requested_by,
             "request_id": request_id},
        )  # fmt: skip


async def record_run_failed(database_url: str, *, run_id: str, error: str) -> None:
    """Mark the run failed with the job's error."""
    async with transaction(database_url) as conn:
        await conn.execute(
            text(
                "UPDATE training_run SET status = 'failed', finished_at = now(), error = :error "
                "WHERE id = :id"
            ),
            {"id": run_id, "error": error},
        )


async def read_champion(database_url: str) -> Champion | None:
    """The champion the gate compares against, or None before the first promotion."""
    async with transaction(database_url) as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT v.version, v.metrics, v.fingerprint FROM model_alias a "
                    "JOIN model_version v ON v.version = a.version_id WHERE a.name = 'champion'"
                )
            )
        ).first()
    if row is None:
        return None
    return Champion(version=row[0], metrics=row[1] or {}, fingerprint=row[2] or {})


async def record_version(
    database_url: str,
    *,
    run_id: str,
    manifest: dict[str, Any],
    report: dict[str, Any],
    judged_champion: str | None,
    request_id: str | None = None,
) -> bool:
    """Write the version, its report, the run's outcome and any promotion; True if promoted.

    The audit rows carry request_id: the request that asked for the training.
    """
    version = manifest["version"]
    async with transaction(database_url) as conn:
        await conn.execute(
            text(
                "INSERT INTO model_version (version, run_id, created_at, rows, labels, metrics, "
                "fingerprint, sha256, library_versions) VALUES (:version, :run_id, :created_at, "
                ":rows, CAST(:labels AS jsonb), CAST(:metrics AS jsonb), "
                "CAST(:fingerprint AS jsonb), CAST(:sha256 AS jsonb), CAST(:libs AS jsonb))"
            ),
            {
                "version": version,
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
        promoted = bool(report["promoted"])
        if promoted:
            promoted = await _promote(conn, version, judged_champion, run_id, report,
                                      request_id=request_id)  # fmt: skip
            if not promoted:
                report = {**report, "promoted": False,
                          "decision": "the champion moved while this version was judged; "
                          "not promoted (move it by hand if it should be served)"}  # fmt: skip
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
        await _audit(conn, action="version.publish", target=f"version:{version}",
                     before=None, after={"run": run_id, "gate": report},
                     reason=str(report.get("decision", "")), request_id=request_id)  # fmt: skip
    return promoted


async def _promote(
    conn: AsyncConnection, version: str, judged_champion: str | None, run_id: str,
    report: dict[str, Any], *, request_id: str | None,
) -> bool:  # fmt: skip
    """Move champion to version (and previous to the old champion) unless champion moved."""
    await conn.execute(
        text(
            "INSERT INTO model_alias (name) SELECT unnest(CAST(:names AS text[])) "
            "ON CONFLICT (name) DO NOTHING"
        ),
        {"names": list(ALIASES)},
    )
    rows = await conn.execute(
        text(
            "SELECT name, version_id FROM model_alias WHERE name IN ('champion', 'previous') "
            "ORDER BY name FOR UPDATE"
        )
    )
    current: dict[str, str | None] = dict(rows.tuples().all())
    if current["champion"] != judged_champion:
        return False
    reason = f"promoted by the gate for run {run_id}: {report.get('decision', '')}"
    moves = [("champion", version)]
    if judged_champion is not None:
        moves.append(("previous", judged_champion))
    for name, target in moves:
        await conn.execute(
            text(
                "UPDATE model_alias SET version_id = :version, updated_by = :actor, "
                "updated_at = now() WHERE name = :name"
            ),
            {"version": target, "actor": WORKER_ACTOR, "name": name},
        )
        await _audit(conn, action="alias.move", target=f"alias:{name}",
                     before={"version": current[name]}, after={"version": target},
                     reason=reason, request_id=request_id)  # fmt: skip
    return True


async def _audit(
    conn: AsyncConnection, *, action: str, target: str, before: Any, after: Any, reason: str,
    request_id: str | None,
) -> None:  # fmt: skip
    await conn.execute(
        text(
            "INSERT INTO audit_event (at, actor, action, target, before, after, reason, "
            "request_id) VALUES (now(), :actor, :action, :target, CAST(:before AS jsonb), "
            "CAST(:after AS jsonb), :reason, :request_id)"
        ),
        {"actor": WORKER_ACTOR, "action": action, "target": target,
         "before": _json(before), "after": _json(after), "reason": reason,
         "request_id": request_id},
    )  # fmt: skip


async def read_desired_state(database_url: str) -> DesiredState:
    """Champion, challenger and a sequence number (the last audit id) from one snapshot."""
    async with transaction(database_url) as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT version_id FROM model_alias WHERE name = 'champion'), "
                    "(SELECT version_id FROM model_alias WHERE name = 'challenger'), "
                    "(SELECT coalesce(max(id), 0) FROM audit_event)"
                )
            )
        ).one()
    return DesiredState(champion=row[0], challenger=row[1], seq=int(row[2]))


async def versions_to_spare(database_url: str, candidates: list[str]) -> set[str]:
    """Of the versions beyond retention, those the registry can still serve or restore.

    Soft-deleted versions without an alias among the candidates are marked as having lost their
    files (so restore refuses them) in the same statement that decides they may go.
    """
    async with transaction(database_url) as conn:
        await conn.execute(
            text(
                "UPDATE model_version SET files_removed_at = now() "
                "WHERE version = ANY(:candidates) AND deleted_at IS NOT NULL "
                "AND files_removed_at IS NULL AND version NOT IN "
                "(SELECT version_id FROM model_alias WHERE version_id IS NOT NULL)"
            ),
            {"candidates": candidates},
        )
        rows = await conn.execute(
            text(
                "SELECT version FROM model_version "
                "WHERE version = ANY(:candidates) AND files_removed_at IS NULL"
            ),
            {"candidates": candidates},
        )
        return set(rows.scalars().all())
