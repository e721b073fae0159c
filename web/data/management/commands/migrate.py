"""`migrate` without the serving statement timeout.

Every connection web opens carries WEB_STATEMENT_TIMEOUT_MS (a few seconds), which bounds the
queries of requests. A migration is not a request: building an index or rewriting a table of a
million rows takes minutes, so this command lifts the timeout on its connection first.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import migrate
from django.db import connections


class Command(migrate.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        with connections[options["database"]].cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        super().handle(*args, **options)
