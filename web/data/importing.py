"""Streaming import of rows (NDJSON or CSV) into `data` with COPY, all or nothing.

The body is read line by line (never whole), each row is checked with `web.data.rules` (the
API's own rules) and written, in blocks of BLOCK_ROWS rows, to one COPY in one transaction; a
thread of its own writes the blocks (web/data/copy_feed.py) while the next ones are checked.
The first bad line stops the writing; reading goes on to report up to MAX_REPORTED bad lines,
then the transaction is rolled back, so a refused import leaves no row behind. The rows enter
the search backlog (web/data/search_backlog.py), drained into the trigram index after commit.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.model_names import DEFAULT_MODEL
from web.data import rules
from web.data.copy_feed import CopyFeed
from web.data.search_backlog import drainer
from web.errors import PayloadTooLarge, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

MAX_REPORTED = 100
# Rows go to the COPY in blocks of pre-formatted text: one write per block, not per row. A
# block is sent at BLOCK_ROWS rows or BLOCK_CHARS characters, so long texts keep it small too.
BLOCK_ROWS = 2000
BLOCK_CHARS = 1_000_000
# Imported rows enter the search backlog (search_indexed false): the COPY does not wait for the
# trigram index, which took ~90 % of an import's time; the drain indexes them after the commit.
COPY_SQL = "COPY data (text, label, model, created_at, updated_at, search_indexed) FROM STDIN"
MARK_BACKLOG_SQL = "INSERT INTO data_search_backlog_import (rows, created_at) VALUES (%s, now())"
NDJSON, CSV = "application/x-ndjson", "text/csv"
# Longest line accepted: the longest text, every character escaped as \uXXXX, plus slack.
MAX_LINE_BYTES = settings.TEXT_MAX_CHARS * 6 + 4096

Parsed = tuple[int, tuple[str, str] | rules.RowProblem]
T = TypeVar("T")
READ_BYTES = 1 << 20  # the body is read (off the connection, streamed_body.py) a MiB at a time
JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a value
# The C scanner itself: json.loads' own steps around it cost more than the parsing of a row.
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class ImportRefusedError(ValidationFailed):
    """The body has bad lines: nothing was imported."""


def import_rows(lines: Iterable[bytes], *, media_type: str, model: str = DEFAULT_MODEL) -> int:
    """Validate and COPY every row of the body in one transaction; return how many were added.

    Every row goes to `model` (a valid name: a slug needs no escaping in COPY's text format).
    """
    parse = _PARSERS[media_type]
    stamp = timezone.now().isoformat()
    row_end = f"\t{model}\t{stamp}\t{stamp}\tf\n"  # model, created_at, updated_at, search_indexed
    bad: list[dict[str, Any]] = []
    single: list[tuple[str, str]] = []  # good rows checked one by one, written in blocks too
    added = single_chars = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            transaction.on_commit(drainer.request)
            with cursor.cursor.copy(COPY_SQL) as copy, CopyFeed(copy) as feed:
                for item in parse(lines):
                    if isinstance(item, list):  # a block of good rows, checked together
                        if not bad:
                            added += _write(feed, [*single, *item], row_end=row_end)
                            single.clear()
                            single_chars = 0
                        continue
                    line, parsed = item
                    if isinstance(parsed, rules.RowProblem):
                        bad.append({"line": line, "reason": str(parsed)})
                        if len(bad) == MAX_REPORTED:
                            break
                    elif not bad:
                        single.append(parsed)
                        single_chars += len(parsed[0])
                        if len(single) == BLOCK_ROWS or single_chars >= BLOCK_CHARS:
                            added += _write(feed, single, row_end=row_end)
                            single.clear()
                            single_chars = 0
                if bad or not (added or single):
                    # Raised inside the COPY and the transaction: both are aborted.
                    raise _refusal(bad)
                added += _write(feed, single, row_end=row_end)
            # In the same transaction as the rows: searches read the backlog while it exists.
            cursor.execute(MARK_BACKLOG_SQL, [added])
    except psycopg.Error as exc:  # the COPY failed in PostgreSQL: rolled back like a refusal
        logger.exception("The COPY of an import failed; nothing was imported.")
        raise ImportFailedError() from exc
    return added


def _write(feed: CopyFeed, rows: list[tuple[str, str]], *, row_end: str) -> int:
    if rows:
        feed.write(copy_text(rows, row_end=row_end))
    return len(rows)


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


class ImportFailedError(ServiceError):
    """PostgreSQL stopped the COPY (connection lost, a constraint): nothing was imported."""

    code = "import_failed"
    default_detail = "The database stopped the import; nothing was imported. Try again."


class ImportTooLargeError(PayloadTooLarge):
    """The body is longer than IMPORT_MAX_BYTES: nothing was imported."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"An import body may have at most {max_bytes} bytes (IMPORT_MAX_BYTES); split the "
            "file. Nothing was imported."
        )


class UnreadableLineError(Exception):
    """A line that cannot be read at all (too long, not UTF-8): reading stops there."""


def bounded_lines(read: Callable[[int], bytes], *, max_bytes: int) -> Iterator[bytes]:
    """The body's lines (each with its newline), read in large chunks, each line bounded."""
    total = 0
    rest = b""
    while chunk := read(READ_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ImportTooLargeError(max_bytes)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if len(line) >= MAX_LINE_BYTES:  # with its newline, longer than MAX_LINE_BYTES
                raise UnreadableLineError(f"Line longer than {MAX_LINE_BYTES} bytes.")
            yield line + b"\n"
        if len(rest) > MAX_LINE_BYTES:
            raise UnreadableLineError(f"Line longer than {MAX_LINE_BYTES} bytes.")
    if rest:
        yield rest


def _batches(items: Iterable[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """items in lists of up to BLOCK_ROWS items or about BLOCK_CHARS of size; a line that cannot
    be read ends the last list before its error is raised."""
    batch: list[T] = []
    chars = 0
    try:
        for item in items:
            batch.append(item)
            chars += size(item)
            if len(batch) == BLOCK_ROWS or chars >= BLOCK_CHARS:
                yield batch
                batch, chars = [], 0
    except UnreadableLineError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def parse_ndjson(lines: Iterable[bytes]) -> Iterator[Parsed | list[tuple[str, str]]]:
    """One JSON object per line; blank lines are skipped. Blocks of good lines come as lists."""
    number = 0
    try:
        for batch in _batches(lines, len):
            first, number = number + 1, number + len(batch)
            rows = _ndjson_block(batch)
            if rows is not None:
                yield rows
            else:  # a bad or unusual line: every line on its own, for the reasons
                yield from _ndjson_lines(batch, first)
    except UnreadableLineError as exc:
        yield number + 1, rules.RowProblem(str(exc))


def _ndjson_block(lines: list[bytes]) -> list[tuple[str, str]] | None:
    """The cleaned rows of lines that are all usual good rows, else None."""
    pairs = []
    try:
        for line in lines:
            source = line.decode().strip(JSON_SPACE)
            if not source:
                continue
            row, end = _scan_json(source, 0)
            if end != len(source) or type(row) is not dict or len(row) != 2:
                return None
            pairs.append((row.get("text"), row.get("label")))
    except (ValueError, StopIteration, RecursionError):
        return None
    return rules.clean_pairs(pairs)


def _ndjson_lines(lines: list[bytes], first: int) -> Iterator[Parsed]:
    for number, line in enumerate(lines, first):
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


def parse_csv(lines: Iterable[bytes]) -> Iterator[Parsed | list[tuple[str, str]]]:
    """A `text,label` header line (either order), then one record per row (RFC 4180 quoting).

    Blocks of good records come as lists; a record is numbered by its first physical line.
    """
    physical = chars = 0

    def decoded() -> Iterator[str]:
        nonlocal physical, chars
        for line in lines:
            try:
                text = line.decode("utf-8-sig" if physical == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UnreadableLineError(f"Not UTF-8: {exc}.") from None
            physical += 1
            chars += len(text)
            yield text

    def records() -> Iterator[tuple[int, list[str] | rules.RowProblem]]:
        start = physical + 1
        try:
            for record in reader:
                if record:  # not a blank line
                    yield start, record
                start = physical + 1
        except csv.Error as exc:
            yield physical, rules.RowProblem(f"Unreadable CSV: {exc}.")
        except UnreadableLineError as exc:
            yield physical + 1, rules.RowProblem(str(exc))

    reader = csv.reader(decoded(), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield physical, rules.RowProblem(f"Unreadable CSV: {exc}.")
        return
    except UnreadableLineError as exc:
        yield physical + 1, rules.RowProblem(str(exc))
        return
    if header is None or sorted(header) != ["label", "text"]:
        yield 1, rules.RowProblem('The first line must be the header "text,label".')
        return
    text_at, label_at = header.index("text"), header.index("label")
    # A block is kept as flat lists of strings, not one list per record: thousands of live
    # containers would make every garbage collection walk them (twice the parsing time).
    block = _CsvBlock()
    block_start = chars
    for start, record in records():
        if type(record) is list and len(record) == 2:
            block.add(start, record[text_at], record[label_at])
        else:
            block.add_odd(start, record)
        if len(block.starts) == BLOCK_ROWS or chars - block_start >= BLOCK_CHARS:
            yield from block.results(header)
            block, block_start = _CsvBlock(), chars
    yield from block.results(header)


class _CsvBlock:
    """Consecutive records, checked together when all are usual, else one by one."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.texts: list[str] = []
        self.labels: list[str] = []
        self.odd: dict[int, list[str] | rules.RowProblem] = {}  # by position in the block

    def add(self, start: int, text: str, label: str) -> None:
        self.starts.append(start)
        self.texts.append(text)
        self.labels.append(label)

    def add_odd(self, start: int, record: list[str] | rules.RowProblem) -> None:
        self.odd[len(self.starts)] = record
        self.add(start, "", "")

    def results(self, header: list[str]) -> Iterator[Parsed | list[tuple[str, str]]]:
        pairs = list(zip(self.texts, self.labels, strict=True))
        rows = None if self.odd else rules.clean_pairs(pairs)
        if rows is not None:
            if rows:
                yield rows
            return
        for at, start in enumerate(self.starts):
            record = self.odd.get(at) or {"text": self.texts[at], "label": self.labels[at]}
            if isinstance(record, rules.RowProblem):
                yield start, record
            elif isinstance(record, list):
                yield start, rules.RowProblem(f"Expected {len(header)} fields, got {len(record)}.")
            else:
                try:
                    yield start, rules.clean_row(record)
                except rules.RowProblem as problem:
                    yield start, problem


_PARSERS = {NDJSON: parse_ndjson, CSV: parse_csv}
MEDIA_TYPES = tuple(_PARSERS)
