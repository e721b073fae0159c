"""The log line formats every service shares (core/logs.py)."""

from __future__ import annotations

import logging
import re

from core.logs import TEXT_FORMAT, TextFormatter, new_request_id


def record(created: float, message: str) -> logging.LogRecord:
    line = logging.LogRecord("web.access", logging.INFO, __file__, 1, message, None, None)
    line.created, line.msecs = created, (created % 1) * 1000
    line.request_id = "abc"
    return line


def test_text_lines_read_as_with_loggings_own_formatter_across_seconds() -> None:
    ours, reference = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    # Same second twice (the cached stamp), then the next second and a later one.
    for created in (1_790_000_000.125, 1_790_000_000.987, 1_790_000_001.004, 1_790_003_600.5):
        line = record(created, "POST /api/predict/ 200 1.20 ms")
        assert ours.format(line) == reference.format(line)


def test_request_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert len(set(ids)) == len(ids)
