"""The training job's database engine bounds every statement (WORKER_STATEMENT_TIMEOUT_MS)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from worker.rows import database_engine


def test_a_statement_past_the_workers_timeout_is_cancelled(test_database_url: str) -> None:
    async def run() -> str:
        engine = database_engine(test_database_url, statement_timeout_ms=200)
        try:
            async with engine.connect() as conn:
                with pytest.raises(DBAPIError, match="statement timeout"):
                    await conn.execute(text("SELECT pg_sleep(5)"))
        finally:
            await engine.dispose()
        engine = database_engine(test_database_url)  # the settings' default
        try:
            async with engine.connect() as conn:
                return str((await conn.execute(text("SHOW statement_timeout"))).scalar())
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == "5min"
