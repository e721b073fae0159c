"""Streaming export: the list's rows as NDJSON or CSV, in constant memory.

PostgreSQL formats the rows itself (COPY ... TO STDOUT) on a connection of the export's own,
read asynchronously as the client takes them; at most one buffer of CHUNK_BYTES is held. The
output is an import body: `{"text": ..., "label": ...}` lines (the JSON that Python's
`json.dumps(row, ensure_ascii=False)` writes), or CSV with a `text,label` header.

The export is bounded: its COPY runs under WEB_TRANSFER_STATEMENT_TIMEOUT_MS, and a client that
has not taken a chunk EXPORT_SEND_DEADLINE_SECONDS after it was handed to the server is dropped:
the task sending the response is cancelled, which cancels the COPY and closes the connection.
The export's slot (web/data/export_slots.py) is given back however the stream ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
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
                    with send_deadline(send_deadline_seconds):
                        yield bytes(buffer)
                    buffer.clear()
            if buffer:
                with send_deadline(send_deadline_seconds):
                    yield bytes(buffer)
    finally:
        await asyncio.to_thread(slot.release)


@contextmanager
def send_deadline(seconds: float) -> Iterator[None]:
    """Around a yield of a streamed response: the client must take the chunk within `seconds`.

    The server takes a chunk when the client reads it. Past the deadline the task sending the
    response is cancelled: Django's handler ends the response there and closes the generator
    at its yield (which closes its database connection).
    """
    sender = asyncio.current_task()
    assert sender is not None
    timer = asyncio.get_running_loop().call_later(seconds, _drop, sender, seconds)
    try:
        yield
    finally:
        timer.cancel()


def _drop(sender: asyncio.Task[Any], seconds: float) -> None:
    log.warning(
        "export: the client took nothing for %.0f s (EXPORT_SEND_DEADLINE_SECONDS); dropped",
        seconds,
    )
    sender.cancel()
