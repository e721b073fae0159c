"""The worker's SQL: the training rows, streamed from one consistent snapshot.

`database_engine` is the one engine a training job uses for everything it reads and writes
(this module and worker/registry_sql.py). The rows come through one connection, one REPEATABLE
READ transaction, one server-side cursor read in chunks of `chunk_rows`: memory stays bounded by
the chunk size whatever the table size, and every row comes from the snapshot taken by the
SELECT, so a concurrent insert is either wholly in or out. A training reads the rows of its own
model name only (`WHERE model = :model`, served by the (model, id) index), in the same id order.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.model_names import DEFAULT_MODEL
from worker.config import get_settings

Row = tuple[int, str, str]  # id, text, label
SELECT_ROWS = text("SELECT id, text, label FROM data WHERE model = :model ORDER BY id")


@dataclass
class DataFingerprint:
    """Row count, highest id and a sha256 over every row's id, label and text, in id order."""

    rows: int = 0
    max_id: int | None = None
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)

    def update(self, chunk: Sequence[Row]) -> None:
        """Add a chunk of rows (in id order) to the fingerprint."""
        if not chunk:
            return
        # Lengths make the encoding unambiguous whatever characters a text holds.
        lines = "".join(f"{i}\t{label}\t{len(body)}\t{body}\n" for i, body, label in chunk)
        self._digest.update(lines.encode("utf-8", "surrogatepass"))
        self.rows += len(chunk)
        self.max_id = chunk[-1][0]

    def as_dict(self) -> dict[str, Any]:
        """Return the fingerprint as stored in the model manifest."""
        return {"rows": self.rows, "max_id": self.max_id, "sha256": self._digest.hexdigest()}


def asyncpg_url(database_url: str) -> str:
    """Return database_url (postgresql://...) with the asyncpg driver selected."""
    url = make_url(database_url)
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def database_engine(database_url: str, *, statement_timeout_ms: int | None = None) -> AsyncEngine:
    """The job's engine: two pooled connections (the rows' snapshot, the registry's writes).

    Every statement is bounded by WORKER_STATEMENT_TIMEOUT_MS (default: the settings'); the
    rows are fetched a chunk per statement, so the bound is per chunk, not per table.
    """
    if statement_timeout_ms is None:
        statement_timeout_ms = get_settings().worker_statement_timeout_ms
    return create_async_engine(
        asyncpg_url(database_url),
        pool_size=2,
        max_overflow=0,
        connect_args={"server_settings": {"statement_timeout": str(statement_timeout_ms)}},
    )


async def stream_training_rows(
    engine: AsyncEngine,
    *,
    chunk_rows: int,
    fingerprint: DataFingerprint | None = None,
    model: str = DEFAULT_MODEL,
) -> AsyncGenerator[list[Row]]:
    """Yield every row of `model` in id order, in lists of at most chunk_rows, from one snapshot."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            # The snapshot is taken by this first statement of the transaction.
            result = await conn.stream(
                SELECT_ROWS.execution_options(yield_per=chunk_rows), {"model": model}
            )
            async for partition in result.partitions(chunk_rows):
                chunk: list[Row] = [(int(r[0]), str(r[1]), str(r[2])) for r in partition]
                if fingerprint is not None:
                    fingerprint.update(chunk)
                yield chunk
