"""Every query is bounded, against a live web service: statement timeout, search terms, exports.

One `python -m web` for the module, with small limits so that each one is reached in a moment:
a statement may run 400 ms, an export may wait 1 s for its client, one export per token and two
per process.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import assert_error, wait_until

STATEMENT_TIMEOUT_MS = 400
SEND_DEADLINE_SECONDS = 1
# About 24 MB of NDJSON: more than every socket buffer on the way holds (PostgreSQL to web, web
# to the client; loopback autotuning lets each take several MB), so a stalled export stays stalled.
EXPORT_ROWS = 60_000


@pytest.fixture(scope="module")
def web_url(
    start_module_service: Callable[..., str], test_database_url: str, module_redis_url: str
) -> str:
    return start_module_service(
        "web",
        DATABASE_URL=test_database_url,
        REDIS_URL=module_redis_url,
        WEB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        EXPORT_SEND_DEADLINE_SECONDS=str(SEND_DEADLINE_SECONDS),
        EXPORT_MAX_PER_TOKEN="1",
        EXPORT_MAX_PER_PROCESS="2",
    )


@pytest.fixture
def database(test_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own to the live service's database (autocommit)."""
    with psycopg.connect(test_database_url, autocommit=True) as conn:
        yield conn


def test_a_statement_past_the_timeout_is_cancelled_and_answered_503(
    web_url: str, web_client: Callable[..., httpx.Client], database: psycopg.Connection[Any]
) -> None:
    """A list that waits on a lock is cancelled by PostgreSQL after the timeout: 503, not a hang."""
    web = web_client(web_url, role="reader")
    with database.transaction():
        database.execute("LOCK TABLE data IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        stuck = web.get("/api/data/")
        waited = time.monotonic() - began
    assert_error(stuck, 503, "query_timeout")
    assert int(stuck.headers["Retry-After"]) >= 1
    assert waited < 4, waited  # the timeout, not the lock, ended it
    assert web.get("/api/data/").status_code == 200  # the pool's connection is usable again


def test_a_search_over_the_term_cap_is_400(
    web_url: str, web_client: Callable[..., httpx.Client]
) -> None:
    web = web_client(web_url, role="reader")
    eight = " ".join(f"term{i}" for i in range(8))
    assert web.get("/api/data/", params={"search": eight}).status_code == 200
    refused = assert_error(
        web.get("/api/data/", params={"search": eight + " ninth"}), 400, "validation_error"
    )
    assert "At most 8 search terms" in refused["fields"]["search"][0]
    assert web.get("/api/data/export", params={"search": eight + " ninth"}).status_code == 400


def stalled_export(web_url: str, token: str) -> socket.socket:
    """An export whose client reads nothing after asking (a tiny receive buffer)."""
    host, port = web_url.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((host, int(port)))
    client.sendall(
        f"GET /api/data/export HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return client


def running_copies(database: psycopg.Connection[Any]) -> int:
    row = database.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%%' "
        "AND state = 'active' AND pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_exports_are_limited_and_a_stalled_reader_is_dropped(
    web_url: str,
    web_client: Callable[..., httpx.Client],
    tokens: dict[str, str],
    database: psycopg.Connection[Any],
) -> None:
    database.execute(
        "INSERT INTO data (text, label, created_at, updated_at, search_indexed) "
        "SELECT repeat(md5(i::text), 12), 'bulk', now(), now(), false "
        "FROM generate_series(1, %s) AS i",
        [EXPORT_ROWS],
    )
    database.execute(
        "INSERT INTO data (text, label, created_at, updated_at) "
        "VALUES ('one small row', 'small', now(), now())"
    )
    reader, editor = web_client(web_url, role="reader"), web_client(web_url, role="editor")
    stalled = [stalled_export(web_url, tokens["reader"])]
    try:
        wait_until(lambda: running_copies(database) == 1, timeout=5, what="the export's COPY runs")

        # One export per token: the reader's second waits; the editor's is let through.
        busy = assert_error(reader.get("/api/data/export"), 429, "too_many_exports")
        assert "EXPORT_MAX_PER_TOKEN" in busy["detail"]
        assert int(reader.get("/api/data/export").headers["Retry-After"]) >= 1
        small = editor.get("/api/data/export", params={"label": "small"})
        assert (small.status_code, small.text) == (
            200,
            '{"text": "one small row", "label": "small"}\n',
        )

        # Two per process: with the editor's stalled too, the admin's is refused.
        stalled.append(stalled_export(web_url, tokens["editor"]))
        wait_until(lambda: running_copies(database) == 2, timeout=5, what="both stalled COPYs run")
        admin = web_client(web_url, role="admin")
        full = assert_error(admin.get("/api/data/export"), 429, "too_many_exports")
        assert "EXPORT_MAX_PER_PROCESS" in full["detail"]

        # Past the send deadline both stalled exports are cut off: COPYs cancelled, slots free.
        wait_until(lambda: running_copies(database) == 0, timeout=10, what="the COPYs cancelled")
        for client in stalled:
            received = received_until_quiet(client)
            assert received.startswith(b"HTTP/1.1 200")
            assert not received.endswith(b"0\r\n\r\n")  # the chunked body never ended
            assert len(received) < EXPORT_ROWS * 400  # far from all of it
        wait_until(
            lambda: reader.get("/api/data/export", params={"label": "small"}).status_code == 200,
            timeout=5,
            what="the reader's slot given back",
        )
    finally:  # a failed check leaves no socket open for a later test's warning
        for client in stalled:
            client.close()


def received_until_quiet(client: socket.socket) -> bytes:
    """What the server sent, read until it closes the connection or sends nothing for 1 s."""
    received = bytearray()
    client.settimeout(1)
    try:
        while chunk := client.recv(1 << 16):
            received += chunk
    except TimeoutError:
        pass
    finally:
        client.close()
    return bytes(received)
