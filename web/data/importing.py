"""Streaming import of rows (NDJSON or CSV) into `data` with COPY, all or nothing.

The body is read line by line (never whole), each row is checked with `web.data.rules` (the
API's own rules) and written, in blocks of BLOCK_ROWS rows, to one COPY in one transaction.
The first bad line stops the writing; reading goes on to report up to MAX_REPORTED bad lines,
then the transaction is rolled back, so a refused import leaves no row behind. The rows enter
the search backlog (web/data/search_backlog.py), drained into the trigram index after commit.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from web.data import rules
from web.data.search_backlog import drainer
from web.errors import PayloadTooLarge, ValidationFailed

MAX_REPORTED = 100
# Rows go to the COPY in blocks of pre-formatted text: one write per block, not per row. A
# block is sent at BLOCK_ROWS rows or BLOCK_CHARS characters, so long texts keep it small too.
BLOCK_ROWS = 2000
BLOCK_CHARS = 1_000_000
# Imported rows enter the search backlog (search_indexed false): the COPY does not wait for the
# trigram index, which took ~90 % of an import's time; the drain indexes them after the commit.
COPY_SQL = "COPY data (text, label, created_at, updated_at, search_indexed) FROM STDIN"
NDJSON, CSV = "application/x-ndjson", "text/csv"
# Longest line accepted: the longest text, every character escaped as \uXXXX, plus slack.
MAX_LINE_BYTES = settings.TEXT_MAX_CHARS * 6 + 4096

Parsed = tuple[int, tuple[str, str] | rules.RowProblem]


class ImportRefusedError(ValidationFailed):
    """The body has bad lines: nothing was imported."""


def import_rows(lines: Iterable[bytes], *, media_type: str) -> int:
    """Validate and COPY every row of the body in one transaction; return how many were added."""
    parse = _PARSERS[media_type]
    stamp = timezone.now().isoformat()
    row_end = f"\t{stamp}\t{stamp}\tf\n"  # created_at, updated_at, search_indexed
    bad: list[dict[str, Any]] = []
    block: list[tuple[str, str]] = []
    block_chars = added = 0
    with transaction.atomic(), connection.cursor() as cursor:
        transaction.on_commit(drainer.request)
        with cursor.cursor.copy(COPY_SQL) as copy:
            for line, parsed in parse(lines):
                if isinstance(parsed, rules.RowProblem):
                    bad.append({"line": line, "reason": str(parsed)})
                    if len(bad) == MAX_REPORTED:
                        break
                elif not bad:
                    block.append(parsed)
                    block_chars += len(parsed[0])
                    if len(block) == BLOCK_ROWS or block_chars >= BLOCK_CHARS:
                        copy.write(copy_text(block, row_end=row_end))
                        added += len(block)
                        block.clear()
                        block_chars = 0
            if bad or not (added or block):
                # Raised inside the COPY and the transaction: both are aborted.
                raise _refusal(bad)
            if block:
                copy.write(copy_text(block, row_end=row_end))
                added += len(block)
    return added


def copy_text(rows: list[tuple[str, str]], *, row_end: str) -> bytes:
    """(text, label) rows in COPY's text format, each row followed by row_end (escaped already).

    Cleaned values hold no NUL and are never empty, so NUL marks the end of a field and two NULs
    the end of a row while the whole block is escaped at once.
    """
    joined = "".join([f"{text}\x00{label}\x00\x00" for text, label in rows])
    escaped = (
        joined.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return escaped.replace("\x00\x00", row_end).replace("\x00", "\t").encode()


def _refusal(bad: list[dict[str, Any]]) -> ImportRefusedError:
    if not bad:
        return ImportRefusedError("The body has no rows: nothing was imported.")
    more = " (reading stopped there)" if len(bad) == MAX_REPORTED else ""
    return ImportRefusedError(
        f"{len(bad)} bad line(s){more}; nothing was imported. First: line {bad[0]['line']}: "
        f"{bad[0]['reason']}",
        lines=bad,
    )


class ImportTooLargeError(PayloadTooLarge):
    """The body is longer than IMPORT_MAX_BYTES: nothing was imported."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"An import body may have at most {max_bytes} bytes (IMPORT_MAX_BYTES); split the "
            "file. Nothing was imported."
        )


class UnreadableLineError(Exception):
    """A line that cannot be read at all (too long, not UTF-8): reading stops there."""


def bounded_lines(readline: Callable[[int], bytes], *, max_bytes: int) -> Iterator[bytes]:
    """The body's lines, each read with a bound so that no line fills the memory."""
    total = 0
    while line := readline(MAX_LINE_BYTES + 1):
        total += len(line)
        if total > max_bytes:
            raise ImportTooLargeError(max_bytes)
        if len(line) > MAX_LINE_BYTES:
            raise UnreadableLineError(f"Line longer than {MAX_LINE_BYTES} bytes.")
        yield line


def parse_ndjson(lines: Iterable[bytes]) -> Iterator[Parsed]:
    """One JSON object per line; blank lines are skipped."""
    number = 0
    try:
        for number, line in enumerate(lines, 1):  # noqa: B007 - number is reported below
            if line.isspace():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                yield number, rules.RowProblem(f"Not a JSON object in UTF-8: {exc}.")
                continue
            try:
                yield number, rules.clean_row(row)
            except rules.RowProblem as problem:
                yield number, problem
    except UnreadableLineError as exc:
        yield number + 1, rules.RowProblem(str(exc))


def parse_csv(lines: Iterable[bytes]) -> Iterator[Parsed]:
    """A `text,label` header line (either order), then one record per row (RFC 4180 quoting)."""
    physical = 0

    def decoded() -> Iterator[str]:
        nonlocal physical
        for line in lines:
            try:
                text = line.decode("utf-8-sig" if physical == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UnreadableLineError(f"Not UTF-8: {exc}.") from None
            physical += 1
            yield text

    reader = csv.reader(decoded(), strict=True)
    try:
        header = next(reader, None)
        if header is None or sorted(header) != ["label", "text"]:
            yield 1, rules.RowProblem('The first line must be the header "text,label".')
            return
        start = physical + 1
        for record in reader:
            if not record:  # a blank line
                pass
            elif len(record) != len(header):
                problem = f"Expected {len(header)} fields, got {len(record)}."
                yield start, rules.RowProblem(problem)
            else:
                try:
                    yield start, rules.clean_row(dict(zip(header, record, strict=True)))
                except rules.RowProblem as problem:
                    yield start, problem
            start = physical + 1
    except csv.Error as exc:
        yield physical, rules.RowProblem(f"Unreadable CSV: {exc}.")
    except UnreadableLineError as exc:
        yield physical + 1, rules.RowProblem(str(exc))


_PARSERS = {NDJSON: parse_ndjson, CSV: parse_csv}
MEDIA_TYPES = tuple(_PARSERS)
