"""The import's body read as lines, and parsed (NDJSON or CSV) into checked rows, in blocks.

The body is read a MiB at a time and cut into lines, each bounded. Rows come in blocks: a
block whose rows are all usual good ones (an object with exactly `text` and `label`, two strings
within the limits) is parsed and checked as a whole, by steps that loop in C rather than in
Python (web/data/rules.py `clean_columns`); a block with anything else (a bad line, an extra
field, a blank line, a BOM) is checked line by line by the API's own functions, so the reasons
and line numbers are those a row-by-row check gives.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any, NamedTuple

from django.conf import settings

from web.data import rules
from web.errors import PayloadTooLarge

# Rows go to the COPY in blocks: at most BLOCK_ROWS rows, and (CSV, rows checked one by one)
# about BLOCK_CHARS characters, so long texts keep a block small too.
BLOCK_ROWS = 2000
BLOCK_CHARS = 1_000_000
READ_BYTES = 1 << 20  # the body is read (off the connection, streamed_body.py) a MiB at a time
# Longest line accepted: the longest text, every character escaped as \uXXXX, plus slack.
MAX_LINE_BYTES = settings.TEXT_MAX_CHARS * 6 + 4096
JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a value
# The C scanner itself: json.loads' own steps around it cost more than the parsing of a row.
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_text_of, _label_of = itemgetter("text"), itemgetter("label")


class Block(NamedTuple):
    """Consecutive good rows, checked and cleaned, as two columns."""

    texts: list[str]
    labels: list[str]


Parsed = tuple[int, tuple[str, str] | rules.RowProblem]  # a row checked alone: line, row or why


class ImportTooLargeError(PayloadTooLarge):
    """The body is longer than IMPORT_MAX_BYTES: nothing was imported."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"An import body may have at most {max_bytes} bytes (IMPORT_MAX_BYTES); split the "
            "file. Nothing was imported."
        )


class UnreadableLineError(Exception):
    """A line that cannot be read at all (too long, not UTF-8): reading stops there."""


def bounded_line_lists(read: Callable[[int], bytes], *, max_bytes: int) -> Iterator[list[bytes]]:
    """The body's lines, without their newline, a list per read of a MiB; each line bounded.

    Lines before one that is too long come first, then UnreadableLineError.
    """
    total = 0
    rest = b""
    while chunk := read(READ_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ImportTooLargeError(max_bytes)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        if lines and max(map(len, lines)) >= MAX_LINE_BYTES:  # with its newline, too long
            yield lines[: next(at for at, line in enumerate(lines) if len(line) >= MAX_LINE_BYTES)]
            raise UnreadableLineError(f"Line longer than {MAX_LINE_BYTES} bytes.")
        yield lines
        if len(rest) > MAX_LINE_BYTES:
            raise UnreadableLineError(f"Line longer than {MAX_LINE_BYTES} bytes.")
    if rest:
        yield [rest]


def parse_ndjson(line_lists: Iterable[list[bytes]]) -> Iterator[Parsed | Block]:
    """One JSON object per line; blank lines are skipped. Good lines come as Blocks."""
    number = 0
    try:
        for lines in line_lists:
            for start in range(0, len(lines), BLOCK_ROWS):
                block = lines[start : start + BLOCK_ROWS]
                first, number = number + 1, number + len(block)
                rows = _ndjson_block(block)
                if rows is None:  # a bad or unusual line: every line on its own, for the reasons
                    yield from _ndjson_lines(block, first)
                elif rows.texts:
                    yield rows
    except UnreadableLineError as exc:
        yield number + 1, rules.RowProblem(str(exc))


def _ndjson_block(lines: list[bytes]) -> Block | None:
    """The cleaned rows of lines that are all usual good rows, else None."""
    objects = _objects_one_per_line(lines)
    if objects is None:
        return _ndjson_block_line_by_line(lines)
    if set(map(type, objects)) != {dict} or set(map(len, objects)) != {2}:
        return None
    try:
        texts, labels = list(map(_text_of, objects)), list(map(_label_of, objects))
    except KeyError:
        return None
    columns = rules.clean_columns(texts, labels)
    return None if columns is None else Block(*columns)


def _objects_one_per_line(lines: list[bytes]) -> list[Any] | None:
    """The values of lines that each hold `{...}` with nothing around it, parsed by one call of
    the C decoder as a JSON array; None if a line is not so (blank, spaces) or is not JSON.

    Why it is exact: the lines are joined with ",\n" (no JSON string may hold a newline), and
    every join must read `},\n{`, so every line starts with `{` and ends with `}`. An object
    spanning lines would need `},\n{` inside it, which only an array within it allows; the
    caller accepts only objects of two strings, so each accepted value is one whole line, and as
    many values as lines means one object per line and nothing else on it.
    """
    source = b"[" + b",\n".join(lines) + b"]"
    if source[1:2] != b"{" or source[-2:-1] != b"}" or source.count(b"},\n{") != len(lines) - 1:
        return None
    try:
        values = json.loads(source.decode())
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return values if len(values) == len(lines) else None


def _ndjson_block_line_by_line(lines: list[bytes]) -> Block | None:
    """As _ndjson_block, for lines with spaces around the object or blank lines among them."""
    texts, labels = [], []
    try:
        for line in lines:
            source = line.decode().strip(JSON_SPACE)
            if not source:
                continue
            row, end = _scan_json(source, 0)
            if end != len(source) or type(row) is not dict or len(row) != 2:
                return None
            texts.append(row.get("text"))
            labels.append(row.get("label"))
    except (ValueError, StopIteration, RecursionError):
        return None
    columns = rules.clean_columns(texts, labels)
    return None if columns is None else Block(*columns)


def _ndjson_lines(lines: list[bytes], first: int) -> Iterator[Parsed]:
    for number, line in enumerate(lines, first):
        if not line or line.isspace():
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


def parse_csv(line_lists: Iterable[list[bytes]]) -> Iterator[Parsed | Block]:
    """A `text,label` header line (either order), then one record per row (RFC 4180 quoting).

    Good records come as Blocks; a record is numbered by its first physical line.
    """
    physical = chars = 0

    def decoded() -> Iterator[str]:
        nonlocal physical, chars
        for lines in line_lists:
            for line in lines:
                try:
                    text = line.decode("utf-8-sig" if physical == 0 else "utf-8") + "\n"
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

    def results(self, header: list[str]) -> Iterator[Parsed | Block]:
        columns = None if self.odd else rules.clean_columns(self.texts, self.labels)
        if columns is not None:
            if columns[0]:
                yield Block(*columns)
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


PARSERS = {"application/x-ndjson": parse_ndjson, "text/csv": parse_csv}
