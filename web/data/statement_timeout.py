"""Bounded queries: the longer statement timeout of the bulk transfers, and how the data API
declares the 503s that bounded queries cause.

Every connection of web runs with `statement_timeout` (WEB_STATEMENT_TIMEOUT_MS, web/settings.py),
so PostgreSQL itself cancels a statement that runs (or waits for a lock) too long; web/errors.py
answers it 503 `query_timeout`, and a pool with no connection to give within
WEB_DB_POOL_TIMEOUT_SECONDS 503 `database_unavailable`, both with Retry-After. The bulk transfers,
whose COPY lasts as long as the upload or the download, take the longer
WEB_TRANSFER_STATEMENT_TIMEOUT_MS explicitly (`transfer_statement_timeout`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction

# How the data API's schemas declare these answers.
UNAVAILABLE_DESCRIPTION = (
    "query_timeout: the query ran past WEB_STATEMENT_TIMEOUT_MS; or database_unavailable: the "
    "database is unreachable or no connection was free in time. Retry-After says when to try again"
)


@contextmanager
def transfer_statement_timeout() -> Iterator[None]:
    """A transaction whose statements may take WEB_TRANSFER_STATEMENT_TIMEOUT_MS (an import)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true)",
            [str(settings.TRANSFER_STATEMENT_TIMEOUT_MS)],
        )
        yield
