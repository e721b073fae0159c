"""Django's connection as the `core.registry.Database` the shared registry use cases run on."""

from __future__ import annotations

import re
from typing import Any

from django.db import connection

# `:name` parameters become psycopg's `%(name)s`; a `::` cast is left alone.
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


class DjangoDatabase:
    """Runs each statement on Django's connection, inside the caller's `transaction.atomic()`."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(_PARAMETER.sub(r"%(\1)s", sql), params or {})
            return list(cursor.fetchall()) if cursor.description else []
