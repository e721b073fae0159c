"""Imported rows wait for the trigram index in the search backlog: found at once, drained later."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
from django.db import connection
from rest_framework.test import APIClient

from tests.helpers import wait_until
from tests.web.conftest import LiveWeb
from tests.web.test_import_export import CSV, csv_body, ndjson, post_import
from web.data.models import Data
from web.data.search_backlog import DRAIN_LOCK, drain_search_backlog

NDJSON = "application/x-ndjson"


def search_texts(api: APIClient, terms: str) -> list[str]:
    """Every text a search finds, following the cursor links to the last page."""
    texts: list[str] = []
    url: str | None = f"/api/data/?search={terms}&page_size=40"
    while url:
        page = api.get(url).json()
        texts += [row["text"] for row in page["results"]]
        url = page["next"]
    return texts


def test_search_finds_the_same_rows_before_and_after_the_backlog_is_drained(
    api: APIClient,
) -> None:
    api.post("/api/data/", {"text": "Indexed Qwerty row", "label": "api"}, format="json")
    rows = [(f"imported qwerty-{i}", "import") for i in range(150)] + [("unrelated", "x")] * 50
    assert post_import(api, csv_body(rows), CSV).status_code == 201
    assert Data.objects.filter(search_indexed=False).count() == 200  # the import's rows wait
    expected = ["Indexed Qwerty row"] + [text for text, _ in rows[:150]]
    assert search_texts(api, "QWERTY") == expected

    assert drain_search_backlog(batch_rows=64) == 200
    assert not Data.objects.filter(search_indexed=False).exists()
    assert search_texts(api, "QWERTY") == expected
    fourteens = [f"imported qwerty-{i}" for i in (14, *range(140, 150))]
    assert search_texts(api, "qwerty-14") == fourteens


def test_a_drain_leaves_the_backlog_to_the_drain_that_holds_the_lock(api: APIClient) -> None:
    assert post_import(api, ndjson([("held back row", "x")] * 3)).status_code == 201
    params = {**connection.get_connection_params()}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [DRAIN_LOCK])
        assert drain_search_backlog() == 0  # another drain runs: it will index these rows
    assert Data.objects.filter(search_indexed=False).count() == 3
    assert search_texts(api, "held back") == ["held back row"] * 3
    assert drain_search_backlog() == 3


def test_an_api_write_to_a_row_in_the_backlog_indexes_it(api: APIClient) -> None:
    assert post_import(api, ndjson([("waiting row", "x")])).status_code == 201
    (row,) = Data.objects.all()
    changed = api.patch(f"/api/data/{row.id}/", {"text": "changed zxcvb"}, format="json")
    assert changed.status_code == 200
    assert Data.objects.get(id=row.id).search_indexed
    assert search_texts(api, "zxcvb") == ["changed zxcvb"]
    assert search_texts(api, "waiting") == []


def test_a_live_import_is_found_at_once_and_indexed_after_it_answers(
    live_web: LiveWeb, web_client: Callable[..., httpx.Client]
) -> None:
    editor = web_client(live_web.url, role="editor")
    rows = [(f"live asdfg {i}", "live") for i in range(3000)]
    answer = editor.post("/api/data/import", content=ndjson(rows),
                         headers={"Content-Type": NDJSON}, timeout=60)  # fmt: skip
    assert answer.status_code == 201, answer.text
    found = editor.get("/api/data/", params={"search": "asdfg 2999"}, timeout=10)
    assert [row["text"] for row in found.json()["results"]] == ["live asdfg 2999"]
    # The web process drains its import's rows into the trigram index by itself.
    wait_until(lambda: not Data.objects.filter(search_indexed=False).exists(), timeout=60)
    assert Data.objects.count() == 3000
    again = editor.get("/api/data/", params={"search": "asdfg 2999"}, timeout=10)
    assert again.json()["results"] == found.json()["results"]


def test_the_drain_command_indexes_what_an_interrupted_drain_left(api: APIClient) -> None:
    from io import StringIO

    from django.core.management import call_command

    assert post_import(api, ndjson([("left behind", "x")] * 4)).status_code == 201
    out = StringIO()
    call_command("drain_search_backlog", stdout=out)
    assert out.getvalue().startswith("4 rows indexed")
    assert not Data.objects.filter(search_indexed=False).exists()
