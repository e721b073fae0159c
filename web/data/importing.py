"""Streaming import of rows (NDJSON or CSV) into `data` with COPY, all or nothing.

The body is read a MiB at a time and parsed in blocks (web/data/import_formats.py), each row
checked with `web.data.rules` (the API's own rules), and written, a block at a time in binary
COPY format (web/data/copy_binary.py), to one COPY in one transaction; a thread of its own
writes the blocks (web/data/copy_feed.py) while the next ones are checked. The first bad line
stops the writing; reading goes on to report up to MAX_REPORTED bad lines, then the transaction
is rolled back, so a refused import leaves no row behind. The rows enter the search backlog
(web/data/search_backlog.py), drained into the trigram index after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from django.db import connection, transaction
from django.utils import timezone

from core.model_names import DEFAULT_MODEL
from web.data import copy_binary, rules
from web.data.copy_feed import CopyFeed
from web.data.import_formats import (
    BLOCK_CHARS,
    BLOCK_ROWS,
    PARSERS,
    Block,
    ImportTooLargeError,
    bounded_line_lists,
)
from web.data.search_backlog import drainer
from web.errors import ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

__all__ = ["ImportTooLargeError", "bounded_line_lists", "import_rows"]

MAX_REPORTED = 100
# Imported rows enter the search backlog (search_indexed false): the COPY does not wait for the
# trigram index, which took ~90 % of an import's time; the drain indexes them after the commit.
# Binary: PostgreSQL parses no field (docs/data.md, "Import speed at a million rows").
COPY_SQL = f"COPY data {copy_binary.COLUMNS} FROM STDIN (FORMAT BINARY)"
MARK_BACKLOG_SQL = "INSERT INTO data_search_backlog_import (rows, created_at) VALUES (%s, now())"
NDJSON, CSV = "application/x-ndjson", "text/csv"


class ImportRefusedError(ValidationFailed):
    """The body has bad lines: nothing was imported."""


def import_rows(
    line_lists: Iterable[list[bytes]], *, media_type: str, model: str = DEFAULT_MODEL
) -> int:
    """Validate and COPY every row of the body in one transaction; return how many were added.

    `line_lists` is the body's lines (bounded_line_lists). Every row goes to `model`.
    """
    parse = PARSERS[media_type]
    rows = copy_binary.BinaryRows(model=model, stamp=timezone.now())
    bad: list[dict[str, Any]] = []
    single = Block([], [])  # good rows checked one by one, written in blocks too
    added = single_chars = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            transaction.on_commit(drainer.request)
            with cursor.cursor.copy(COPY_SQL) as copy, CopyFeed(copy) as feed:
                feed.write(copy_binary.SIGNATURE)
                for item in parse(line_lists):
                    if isinstance(item, Block):  # good rows, checked together
                        if not bad:
                            added += _write(feed, rows, single) + _write(feed, rows, item)
                            single, single_chars = Block([], []), 0
                        continue
                    line, parsed = item
                    if isinstance(parsed, rules.RowProblem):
                        bad.append({"line": line, "reason": str(parsed)})
                        if len(bad) == MAX_REPORTED:
                            break
                    elif not bad:
                        single.texts.append(parsed[0])
                        single.labels.append(parsed[1])
                        single_chars += len(parsed[0])
                        if len(single.texts) == BLOCK_ROWS or single_chars >= BLOCK_CHARS:
                            added += _write(feed, rows, single)
                            single, single_chars = Block([], []), 0
                if bad or not (added or single.texts):
                    # Raised inside the COPY and the transaction: both are aborted.
                    raise _refusal(bad)
                added += _write(feed, rows, single)
                feed.write(copy_binary.TRAILER)
            # In the same transaction as the rows: searches read the backlog while it exists.
            cursor.execute(MARK_BACKLOG_SQL, [added])
    except psycopg.Error as exc:  # the COPY failed in PostgreSQL: rolled back like a refusal
        logger.exception("The COPY of an import failed; nothing was imported.")
        raise ImportFailedError() from exc
    return added


def _write(feed: CopyFeed, rows: copy_binary.BinaryRows, block: Block) -> int:
    if block.texts:
        feed.write(rows.block(block.texts, block.labels))
    return len(block.texts)


def _refusal(bad: list[dict[str, Any]]) -> ImportRefusedError:
    if not bad:
        return ImportRefusedError("The body has no rows: nothing was imported.")
    more = " (reading stopped there)" if len(bad) == MAX_REPORTED else ""
    return ImportRefusedError(
        f"{len(bad)} bad line(s){more}; nothing was imported. First: line {bad[0]['line']}: "
        f"{bad[0]['reason']}",
        lines=bad,
    )


class ImportFailedError(ServiceError):
    """PostgreSQL stopped the COPY (connection lost, a constraint): nothing was imported."""

    code = "import_failed"
    default_detail = "The database stopped the import; nothing was imported. Try again."


MEDIA_TYPES = tuple(PARSERS)
