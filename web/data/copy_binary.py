"""Imported rows in PostgreSQL's binary COPY format, a block of thousands at a time.

Binary COPY spares PostgreSQL the parsing of every field (two timestamps a row, the escapes of
the text format) and Python the escaping: a row is its text's UTF-8 bytes behind a 6-byte head,
then its label's field and the fields every row of an import shares (model name, times, the
backlog flag), pre-built once per label. The values must be cleaned already (web/data/rules.py:
no NUL, no lone surrogate), as PostgreSQL's text type accepts nothing else.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat

COLUMNS = "(text, label, model, created_at, updated_at, search_indexed)"
# The signature, no flags, no header extension; the trailer is a field count of -1.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
# PostgreSQL's timestamps count microseconds from 2000-01-01 UTC.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_LABELS_KEPT = 10_000  # pre-built label fields kept (an import with more distinct labels rebuilds)
_row_head = struct.Struct(">hi").pack  # the row's field count, then the text's length
_length = struct.Struct(">i").pack


class BinaryRows:
    """Blocks of (text, label) rows for one import: every row gets the same model and times."""

    def __init__(self, *, model: str, stamp: datetime) -> None:
        moment = (stamp - _EPOCH) // timedelta(microseconds=1)
        name = model.encode()
        self._shared = (
            _length(len(name))
            + name
            + struct.pack(">iqiqib", 8, moment, 8, moment, 1, 0)  # created, updated, false
        )
        self._after_text: dict[str, bytes] = {}  # label -> its field and the shared fields

    def block(self, texts: list[str], labels: list[str]) -> bytes:
        """The rows in binary COPY format (without the signature or the trailer)."""
        encoded = list(map(str.encode, texts))
        heads = map(_row_head, repeat(6), map(len, encoded))
        after_text = self._after_text
        if len(after_text) > _LABELS_KEPT:
            after_text.clear()
        for label in set(labels).difference(after_text):
            name = label.encode()
            after_text[label] = _length(len(name)) + name + self._shared
        tails = map(after_text.__getitem__, labels)
        return b"".join(chain.from_iterable(zip(heads, encoded, tails, strict=True)))
