"""Streaming export: the list's rows as NDJSON or CSV, in constant memory.

PostgreSQL formats the rows itself (COPY ... TO STDOUT) on a connection of the export's own,
read asynchronously as the client takes them; at most two chunks of CHUNK_BYTES are held. The
output is an import body: `{"text": ..., "label": ...}` lines (the JSON that Python's
`json.dumps(row, ensure_ascii=False)` writes), or CSV with a `text,label` header.

The export is bounded: its COPY runs under WEB_TRANSFER_STATEMENT_TIMEOUT_MS, and a client that
takes nothing for EXPORT_SEND_DEADLINE_SECONDS is dropped. A task of the export's own runs the
COPY and hands chunks over a one-place queue to the response; when a chunk waits longer than
the deadline, that task cancels the task sending the response (which ends the response) and
ends itself, closing the connection, which cancels the COPY. The task owns the connection, not
the response's generator, because Django leaves a generator it stops iterating unclosed until
garbage collection. The export's slot (web/data/export_slots.py) is given back at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from web.data.export_slots import ExportSlot

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
NDJSON, CSV = "ndjson", "csv"
MEDIA_TYPES = {NDJSON: "application/x-ndjson", CSV: "text/csv; charset=utf-8"}
# jsonb orders keys by length, so "text" comes before "label", as in the import format.
_JSON_LINE = RawSQL(
    """jsonb_build_object('text', "data"."text", 'label', "data"."label")::text""", []
)


def export_sql(queryset: QuerySet[Any], *, file_format: str) -> str:
    """The COPY statement that writes the queryset's rows (its filters and order) as file_format."""
    if file_format == NDJSON:
        query = queryset.annotate(line=_JSON_LINE).values_list("line")
        options = "(FORMAT text)"
    else:
        query = queryset.values_list("text", "label")
        options = "(FORMAT csv, HEADER true)"
    sql, params = query.query.sql_with_params()
    # COPY takes no bind parameters: psycopg quotes them into the statement client-side.
    connection.ensure_connection()
    with psycopg.ClientCursor(connection.connection) as quoting:
        inlined = quoting.mogrify(sql, params)
    return f"COPY ({inlined}) TO STDOUT {options}"


async def stream_copy(
    sql: str,
    *,
    file_format: str,
    slot: ExportSlot,
    statement_timeout_ms: int,
    send_deadline_seconds: float,
) -> AsyncIterator[bytes]:
    """Run the COPY on a connection of its own and yield its output in chunks."""
    params = {**connection.get_connection_params()}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["options"] = f"-c statement_timeout={statement_timeout_ms}"
    chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=1)
    sender = asyncio.current_task()
    assert sender is not None
    producer = asyncio.create_task(
        _copy_into(chunks, sql, params, file_format, slot, sender, send_deadline_seconds)
    )
    try:
        while (chunk := await chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        producer.cancel()


async def _copy_into(
    chunks: asyncio.Queue[bytes | BaseException | None],
    sql: str,
    params: dict[str, Any],
    file_format: str,
    slot: ExportSlot,
    sender: asyncio.Task[Any],
    deadline: float,
) -> None:
    """The COPY's output into `chunks`; a chunk not taken within `deadline` drops the client."""

    async def hand_over(item: bytes | BaseException | None) -> None:
        try:
            await asyncio.wait_for(chunks.put(item), deadline)
        except TimeoutError:
            log.warning(
                "export: the client took nothing for %.0f s (EXPORT_SEND_DEADLINE_SECONDS); "
                "dropped",
                deadline,
            )
            sender.cancel()
            raise

    try:
        async with (
            await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn,
            conn.cursor() as cursor,
            cursor.copy(sql) as copy,
        ):
            buffer = bytearray()
            async for row in copy:
                # COPY's text format doubles every backslash; a JSON line has no other escapes.
                buffer += bytes(row).replace(b"\\\\", b"\\") if file_format == NDJSON else row
                if len(buffer) >= CHUNK_BYTES:
                    await hand_over(bytes(buffer))
                    buffer.clear()
                    if slot.renewal_due():  # the token's lease, while the export runs
                        await asyncio.to_thread(slot.renew)
        if buffer:
            await hand_over(bytes(buffer))
        await hand_over(None)
    except TimeoutError:
        pass  # dropped (logged); leaving the block closed the connection
    except Exception as exc:  # the COPY failed (statement timeout, connection lost): the
        with contextlib.suppress(TimeoutError):  # response raises it, if it is still there
            await hand_over(exc)
    finally:
        await asyncio.to_thread(slot.release)
