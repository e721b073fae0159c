"""The import's body goes to its view as it arrives, and its COPY is written by a thread."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

from django.db import connection
from rest_framework.test import APIClient

from tests.helpers import assert_error, bearer
from tests.web.conftest import LiveWeb
from tests.web.test_import_export import NDJSON, ndjson, post_import
from web.data.importing import BLOCK_ROWS
from web.data.models import Data
from web.data.streamed_body import StreamingImportHandler
from web.edge.body_limits import IMPORT_PATH, BodyRoute, limit_bodies


def test_a_copy_postgresql_stops_midway_answers_500_in_the_error_shape_and_leaves_nothing(
    api: APIClient,
) -> None:
    # The rules accept the label; the table (a constraint added for the test) does not, so the
    # COPY fails in PostgreSQL, in its writing thread, while the next blocks are checked.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE data ADD CONSTRAINT no_boom CHECK (label <> 'boom') NOT VALID")
    rows = [(f"row {i}", "ok") for i in range(4 * BLOCK_ROWS)]
    rows[2 * BLOCK_ROWS + 10] = ("refused by the table", "boom")
    error = assert_error(post_import(api, ndjson(rows)), 500, "import_failed")
    assert "nothing was imported" in error["detail"]
    assert Data.objects.count() == 0
    # The connection is usable again: the next import goes through.
    assert post_import(api, ndjson([("after", "ok")])).status_code == 201


def test_an_import_without_a_token_is_refused_before_its_body_is_sent(live_web: LiveWeb) -> None:
    host, port = live_web.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/api/data/import")
    conn.putheader("Content-Type", NDJSON)
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()  # and not one byte of the 50 MB: the token check answers first
    answer = conn.getresponse()
    assert answer.status == 401
    assert json.loads(answer.read())["error"] == "not_authenticated"
    conn.close()


def test_a_chunked_body_cut_off_by_the_size_guard_gets_one_413_and_leaves_nothing(
    asgi_db: Any, tokens: dict[str, str]
) -> None:
    route = BodyRoute(IMPORT_PATH, BLOCK_ROWS * 30, "IMPORT_MAX_BYTES", streamed=True)
    app = limit_bodies(StreamingImportHandler(), routes=[route], timeout_seconds=30)
    block = ndjson([(f"row {i}", "ok") for i in range(BLOCK_ROWS)])  # ~30 bytes a row
    chunks = [block[: len(block) // 2], block[len(block) // 2 :], block]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": True}
        await asyncio.Event().wait()  # the client would go on sending; never reached
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", NDJSON.encode()), (b"transfer-encoding", b"chunked")]
    headers += [(k.lower().encode(), v.encode()) for k, v in bearer(tokens["admin"]).items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/data/import",
        "headers": headers,
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "asgi": {"version": "3.0"},
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert [start["status"] for start in starts] == [413]
    assert json.loads(sent[1]["body"])["error"] == "payload_too_large"
    assert Data.objects.count() == 0
