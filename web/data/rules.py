"""The rules a data row must follow, shared by the JSON API (serializer) and the streaming import.

One function per field returns the cleaned value or raises `RowProblem`, so a row imported from
a file and a row posted as JSON are accepted or refused for the same reasons, with the same words.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from web.data.models import LABEL_MAX_LENGTH

FIELDS = ("text", "label")
# Rows of a file carry no model: the import's `?model=` names the one model of all its rows.
IMPORT_MODEL_HINT = " (every row of an import goes to the model that ?model= names)"
TEXT_MAX_CHARS: int = settings.TEXT_MAX_CHARS  # read once: this runs for every imported row
# JSON may escape lone surrogates ("\\ud800"); they are not text and cannot be stored.
_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")
# The same rule as a JSON Schema pattern, for the OpenAPI document: something not blank, no NUL.
SCHEMA_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


class RowProblem(ValueError):
    """A value a row may not hold; the message is meant for the person who sent it."""


def clean_text(value: Any) -> str:
    """The text as stored (unchanged), or RowProblem."""
    return _clean_string(value, max_chars=TEXT_MAX_CHARS)


def clean_label(value: Any) -> str:
    """The label as stored (surrounding whitespace removed), or RowProblem."""
    if isinstance(value, str) and len(value) > LABEL_MAX_LENGTH:
        return _clean_string(value, max_chars=LABEL_MAX_LENGTH)  # too long as sent, not as stored
    stripped = value.strip() if isinstance(value, str) else value
    return _clean_string(stripped, max_chars=LABEL_MAX_LENGTH)


def clean_row(row: Any) -> tuple[str, str]:
    """(text, label) of a row object, or RowProblem naming every field that is wrong."""
    if type(row) is dict and len(row) == 2 and "text" in row and "label" in row:
        try:  # the usual row: the two fields and nothing else
            return clean_text(row["text"]), clean_label(row["label"])
        except RowProblem:
            pass  # described field by field below
    if not isinstance(row, dict):
        raise RowProblem('Expected an object with "text" and "label".')
    problems = [
        f"{name}: Unknown field{IMPORT_MODEL_HINT if name == 'model' else ''}."
        for name in sorted(set(row) - set(FIELDS))
    ]
    cleaned: list[str] = []
    for name, clean in (("text", clean_text), ("label", clean_label)):
        try:
            cleaned.append(clean(row[name]) if name in row else _missing())
        except RowProblem as problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise RowProblem(" ".join(problems))
    return cleaned[0], cleaned[1]


def clean_columns(texts: list[Any], labels: list[Any]) -> tuple[list[str], list[str]] | None:
    """Every text and label cleaned as clean_text and clean_label would, when all are usual
    good values; None as soon as one is not (then check them one by one for the reasons).

    The same rules as whole-column steps (each a loop in C, not in Python), for the import's
    blocks of thousands of rows; the test suite checks that both accept and clean the same values.
    """
    if not texts:
        return [], []
    if set(map(type, texts)) != {str} or set(map(type, labels)) != {str}:
        return None
    if max(map(len, labels)) > LABEL_MAX_LENGTH:  # too long as sent, not as stored
        return None
    stripped = list(map(str.strip, labels))
    if not all(stripped) or not all(texts) or max(map(len, texts)) > TEXT_MAX_CHARS:
        return None
    if any(map(str.isspace, texts)) or not _storable(texts) or not _storable(stripped):
        return None
    return texts, stripped


def _storable(values: list[str]) -> bool:
    """No NUL and no lone surrogate in any value: what _NOT_STORABLE finds, at memchr's speed."""
    joined = "".join(values)
    if "\x00" in joined:
        return False
    if joined.isascii():  # a flag of the string: no surrogate can be in it
        return True
    try:
        joined.encode()  # a surrogate code point (lone, or a pair as two) cannot be UTF-8
    except UnicodeEncodeError:
        return False
    return True


def _missing() -> str:
    raise RowProblem("This field is required.")


def _clean_string(value: Any, *, max_chars: int) -> str:
    if not isinstance(value, str):
        raise RowProblem("Must be a string.")
    if not value or value.isspace():
        raise RowProblem("This field may not be blank.")
    if len(value) > max_chars:
        raise RowProblem(f"Ensure this field has no more than {max_chars} characters.")
    if _NOT_STORABLE.search(value):
        raise RowProblem("Null characters and lone surrogates are not allowed.")
    return value
