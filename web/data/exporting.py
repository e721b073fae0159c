"""Streaming export: the list's rows as NDJSON or CSV, in constant memory.

PostgreSQL formats the rows itself (COPY ... TO STDOUT) on a connection of the export's own,
read asynchronously as the client takes them; at most one buffer of CHUNK_BYTES is held. The
output is an import body: `{"text": ..., "label": ...}` lines (the JSON that Python's
`json.dumps(row, ensure_ascii=False)` writes), or CSV with a `text,label` header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

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


async def stream_copy(sql: str, *, file_format: str) -> AsyncIterator[bytes]:
    """Run the COPY on a connection of its own and yield its output in chunks."""
    params = {**connection.get_connection_params()}
    params.pop("cursor_factory", None)
    params.pop("context", None)
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
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
