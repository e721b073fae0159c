"""Bounded queries: what a cancelled statement or a full connection pool is answered.

Every connection of web runs with `statement_timeout` (WEB_STATEMENT_TIMEOUT_MS, web/settings.py),
so PostgreSQL itself cancels a statement that runs (or waits for a lock) too long. The views of
the data API answer that as 503 `query_timeout`, and a pool with no free connection within
WEB_DB_POOL_TIMEOUT_SECONDS as 503 `database_busy`, both with Retry-After, in the error shape.
The bulk transfers, whose COPY lasts as long as the upload or the download, take the longer
WEB_TRANSFER_STATEMENT_TIMEOUT_MS explicitly (`transfer_statement_timeout`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg_pool import PoolTimeout

from web.errors import ServiceError

RETRY_AFTER_SECONDS = 5
# How the data API's schemas declare these answers.
UNAVAILABLE_DESCRIPTION = (
    "query_timeout: the query ran past WEB_STATEMENT_TIMEOUT_MS; or database_busy: no database "
    "connection free in time. Retry-After says when to try again"
)


class QueryTimedOut(ServiceError):
    status, code = 503, "query_timeout"

    def __init__(self) -> None:
        super().__init__(
            f"The database query took longer than {settings.STATEMENT_TIMEOUT_MS} ms and was "
            "cancelled; narrow the request (fewer or longer search terms) or retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class DatabaseBusy(ServiceError):
    status, code = 503, "database_busy"

    def __init__(self) -> None:
        super().__init__(
            "Every database connection of this server is in use; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def as_service_error(exc: BaseException) -> ServiceError | None:
    """The answer for a database error that bounded queries cause, or None for any other."""
    if isinstance(exc, OperationalError | psycopg.OperationalError):
        cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
        if isinstance(cause, psycopg.errors.QueryCanceled):
            return QueryTimedOut()
        if isinstance(cause, PoolTimeout):
            return DatabaseBusy()
    return None


class BoundedQueriesMixin:
    """For DRF views: a cancelled statement or a full pool answered 503, not 500."""

    def handle_exception(self, exc: Exception) -> Any:
        return super().handle_exception(as_service_error(exc) or exc)  # type: ignore[misc]


@contextmanager
def transfer_statement_timeout() -> Iterator[None]:
    """A transaction whose statements may take WEB_TRANSFER_STATEMENT_TIMEOUT_MS (an import)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true)",
            [str(settings.TRANSFER_STATEMENT_TIMEOUT_MS)],
        )
        yield
