"""The database refuses a blank text or label by itself, whatever wrote the row.

The API and the import refuse blank values first (web/data/rules.py); the table's checks are
the last line for anything else, and what the admin's forms validate a row against. They take a
fast path on the first character (migration 0009), which must refuse and accept exactly what
the rule `~ '\\S'` always did.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

VALUES = [
    "",
    " ",
    "\t\n\r\f\v",
    "\u3000",  # ideographic space
    "\u00a0",  # no-break space
    "\u2003\u2003",  # em spaces
    "\x01",
    "\x7f",
    " x",
    "\tx",
    "\u3000x",
    "x",
    "!",
    "~",
    "é",
    "日本語",
    "x ",
]


def inserts(column: str, value: str) -> bool:
    """Whether the table takes a row whose `column` is `value` (the other one a plain word)."""
    row = {"text": "a text", "label": "a-label", column: value}
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO data (text, label, model, created_at, updated_at, search_indexed)"
                " VALUES (%s, %s, 'default', now(), now(), true)",
                [row["text"], row["label"]],
            )
            transaction.set_rollback(True)  # nothing stays behind
    except IntegrityError:
        return False
    return True


def validates(column: str, value: str) -> bool:
    """Whether Django's model validation (the admin's forms) takes the row."""
    from web.data.models import Data

    row = {"text": "a text", "label": "a-label", column: value}
    try:
        Data(**row).validate_constraints()
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("column", ["text", "label"])
def test_the_table_refuses_exactly_what_has_no_character_besides_whitespace(
    db: Any, column: str
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT v ~ '\\S' FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n",
            [VALUES],
        )
        not_blank = [found for (found,) in cursor.fetchall()]

    taken = [inserts(column, value) for value in VALUES]

    assert taken == not_blank
    assert [validates(column, value) for value in VALUES] == not_blank
    assert taken[:3] == [False, False, False] and taken[-6:] == [True] * 6
