"""JSON with a bounded nesting depth: every body and cursor web parses goes through here.

Python's parser recurses once per level and raises RecursionError about a thousand levels deep,
which would be a 500; code that walks a value nested just short of that can hit the same limit.
`load_json` refuses anything nested deeper than `MAX_JSON_DEPTH` with `JsonTooDeep`, a
ValueError like every other malformed JSON. A body with no more brackets than the limit cannot
nest deeper, so the usual body (a predict body has one) costs two byte counts and nothing more.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

# No body of this API nests more than four levels (a bulk write: a list of objects); 32 leaves
# room for what clients add, far below the ~1 000 levels where Python's parser gives up.
MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"nested more than {MAX_JSON_DEPTH} levels deep")


def load_json(raw: str | bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """`json.loads(raw)`, with JsonTooDeep for values nested deeper than MAX_JSON_DEPTH."""
    if isinstance(raw, bytes):
        openers = raw.count(b"[") + raw.count(b"{")
    else:
        openers = raw.count("[") + raw.count("{")
    if openers <= MAX_JSON_DEPTH:
        return json.loads(raw, parse_constant=parse_constant)
    try:
        value = json.loads(raw, parse_constant=parse_constant)
    except RecursionError:
        raise JsonTooDeep() from None
    # Brackets inside strings count above too: measure the value itself (containers only).
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise JsonTooDeep()
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts in `value` nest more than `limit` levels (no recursion)."""
    level: list[Any] = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, list | dict)
        ]
        if not level:
            return False
    return bool(level)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity) with the nesting bound of `load_json`."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # DRF's own choice of charset, which refuses bytes-to-bytes codecs (a decompression).
        encoding = get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            return load_json(text, parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:  # UnicodeDecodeError and JsonTooDeep included
            raise ParseError(f"JSON parse error - {exc}") from None
