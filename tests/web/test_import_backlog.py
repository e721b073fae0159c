"""Imported rows wait for the trigram index in the search backlog: found at once, drained later."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.helpers import wait_until
from tests.web.conftest import LiveWeb
from tests.web.test_import_export import CSV, csv_body, ndjson, post_import
from web.data.models import Data, SearchBacklogImport
from web.data.search_backlog import (
    BACKLOG_INDEXES,
    BACKLOG_LABEL_INDEX,
    BACKLOG_TRIGRAM_INDEX,
    DRAIN_LOCK,
    drain_search_backlog,
    index_backlog,
)

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
    assert list(SearchBacklogImport.objects.values_list("rows", flat=True)) == [200]
    expected = ["Indexed Qwerty row"] + [text for text, _ in rows[:150]]
    assert search_texts(api, "QWERTY") == expected

    assert drain_search_backlog(batch_rows=64) == 200
    assert not Data.objects.filter(search_indexed=False).exists()
    assert not SearchBacklogImport.objects.exists()  # searches stop reading the backlog
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
    answer = editor.post(
        "/api/data/import", content=ndjson(rows), headers={"Content-Type": NDJSON}, timeout=60
    )
    assert answer.status_code == 201, answer.text
    found = editor.get("/api/data/", params={"search": "asdfg 2999"}, timeout=10)
    assert [row["text"] for row in found.json()["results"]] == ["live asdfg 2999"]
    # The web process drains its import's rows into the trigram index by itself.
    wait_until(lambda: not Data.objects.filter(search_indexed=False).exists(), timeout=60)
    assert Data.objects.count() == 3000
    again = editor.get("/api/data/", params={"search": "asdfg 2999"}, timeout=10)
    assert again.json()["results"] == found.json()["results"]


def backlog_index_state() -> list[tuple[str, bool]]:
    """(name, valid?) of the backlog's own indexes (label, trigram); [] when there are none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
            "WHERE indexrelid::regclass::text = ANY(%s) ORDER BY 1",
            [list(BACKLOG_INDEXES)],
        )
        return [(name, valid) for name, valid in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)  # CREATE INDEX CONCURRENTLY runs outside transactions
def test_a_big_backlog_is_indexed_in_bulk_while_it_waits_and_the_index_goes_with_it(
    api: APIClient,
) -> None:
    # As an import leaves its rows (written here directly: an import through the view would
    # start this process's own drain at its commit).
    rows = [Data(text=f"bulk Zxcvb {i}", label="b", search_indexed=False) for i in range(150)]
    Data.objects.bulk_create([*rows, *(Data(text="other", label="o", search_indexed=False),) * 50])
    SearchBacklogImport.objects.create(rows=200)
    with connection.cursor() as cursor:
        assert not index_backlog(cursor, min_rows=201)  # a small backlog is drained as it is
        assert backlog_index_state() == []
        assert index_backlog(cursor, min_rows=200)
    assert backlog_index_state() == [(BACKLOG_LABEL_INDEX, True), (BACKLOG_TRIGRAM_INDEX, True)]
    expected = [f"bulk Zxcvb {i}" for i in range(150)]
    assert search_texts(api, "zxcvb") == expected
    assert search_texts(api, "zxcvb 149") == ["bulk Zxcvb 149"]
    newest_first = api.get("/api/data/?label=b&ordering=-id&page_size=150").json()["results"]
    assert [row["text"] for row in newest_first] == expected[::-1]

    assert drain_search_backlog(index_min_rows=200) == 200  # builds it again, then drops it
    assert backlog_index_state() == []  # imports no longer write into it
    assert search_texts(api, "zxcvb") == expected


def test_the_drain_command_indexes_what_an_interrupted_drain_left(api: APIClient) -> None:
    from io import StringIO

    from django.core.management import call_command

    assert post_import(api, ndjson([("left behind", "x")] * 4)).status_code == 201
    out = StringIO()
    call_command("drain_search_backlog", stdout=out)
    assert out.getvalue().startswith("4 rows indexed")
    assert not Data.objects.filter(search_indexed=False).exists()


ORDERINGS = [
    f"{sign}{field}" for field in ("id", "label", "created_at", "updated_at") for sign in ("", "-")
]


def walk_ids(api: APIClient, query: str) -> tuple[list[int], list[int]]:
    """Ids of every page following `next`, then of every page back from the last via `previous`."""
    forward: list[list[int]] = []
    url: str | None = f"/api/data/?{query}&page_size=7"
    last = url
    while url:
        last = url
        page = api.get(url).json()
        forward.append([row["id"] for row in page["results"]])
        url = page["next"]
    backward: list[list[int]] = []
    url = api.get(last).json()["previous"]
    while url:
        page = api.get(url).json()
        backward.insert(0, [row["id"] for row in page["results"]])
        url = page["previous"]
    return [i for page in forward for i in page], [i for page in backward for i in page]


def post_api_rows(api: APIClient, text: str, *, start: int) -> None:
    """Twelve rows through the API (indexed at once): `{text} {i}`, labelled l0-l4 in turn."""
    rows = [{"text": f"{text} {i}", "label": f"l{i % 5}"} for i in range(start, start + 12)]
    assert api.post("/api/data/", rows, format="json").status_code == 201


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_a_search_pages_through_indexed_and_waiting_rows_in_order_every_row_once(
    api: APIClient, ordering: str
) -> None:
    post_api_rows(api, "api plum", start=0)  # indexed, older than the import
    imported = [(f"imported plum {i}" if i % 3 else f"other {i}", f"l{i % 4}") for i in range(60)]
    assert post_import(api, csv_body(imported), CSV).status_code == 201
    post_api_rows(api, "api plum", start=100)  # indexed, newer than the import
    middle = Data.objects.filter(search_indexed=False).order_by("id")[20]
    patched = api.patch(f"/api/data/{middle.id}/", {"text": "patched plum"}, format="json")
    assert patched.status_code == 200
    waiting = Data.objects.filter(search_indexed=False, text__icontains="plum").count()
    assert waiting == 39  # the import's matches but the patched one wait in the backlog

    field, descending = ordering.lstrip("-"), ordering.startswith("-")
    expected = list(
        Data.objects.filter(text__icontains="PLUM")
        .order_by(f"{'-' if descending else ''}{field}", f"{'-' if descending else ''}id")
        .values_list("id", flat=True)
    )
    assert len(expected) == 12 + 40 + 12
    forward, backward = walk_ids(api, f"search=plum&ordering={ordering}")
    assert forward == expected
    assert backward == expected[: len(backward)] and len(backward) >= len(expected) - 7


# The label index holds indexed rows only (web/data/models.py): lists and exports read by label
# find the waiting rows apart, and the same rows once they are drained.
LABEL_QUERIES = [
    *(f"label=l1&ordering={o}" for o in ORDERINGS),
    "ordering=label",
    "ordering=-label",
]


@pytest.mark.parametrize("query", LABEL_QUERIES)
def test_a_list_by_label_pages_through_indexed_and_waiting_rows_in_order_every_row_once(
    api: APIClient, query: str
) -> None:
    post_api_rows(api, "api row", start=0)  # indexed, older than the import
    imported = [(f"imported row {i}", f"l{i % 4}") for i in range(60)]
    assert post_import(api, csv_body(imported), CSV).status_code == 201
    post_api_rows(api, "api row", start=100)  # indexed, newer than the import
    middle = Data.objects.filter(search_indexed=False, label="l1").order_by("id")[5]
    patched = api.patch(f"/api/data/{middle.id}/", {"text": "patched"}, format="json")
    assert patched.status_code == 200
    assert Data.objects.filter(search_indexed=False, label="l1").count() == 14

    ordering = query.split("ordering=")[1]
    field, sign = ordering.lstrip("-"), "-" if ordering.startswith("-") else ""
    rows = Data.objects.filter(label="l1") if query.startswith("label=") else Data.objects.all()
    expected = list(rows.order_by(f"{sign}{field}", f"{sign}id").values_list("id", flat=True))
    assert len(expected) == (3 + 15 + 3 if query.startswith("label=") else 84)
    forward, backward = walk_ids(api, query)
    assert forward == expected
    assert backward == expected[: len(backward)] and len(backward) >= len(expected) - 7

    assert drain_search_backlog() == 59
    assert walk_ids(api, query)[0] == expected


def test_an_export_by_label_holds_the_waiting_rows_and_the_same_rows_once_drained(
    live_web: LiveWeb, transactional_db: None, web_client: Callable[..., httpx.Client]
) -> None:
    # As an import leaves its rows (written here directly: an import through the server would
    # start its own drain at its commit).
    Data.objects.bulk_create(Data(text=f"indexed {i}", label=f"l{i % 2}") for i in range(4))
    Data.objects.bulk_create(
        Data(text=f"waiting {i}", label=f"l{i % 2}", search_indexed=False) for i in range(4)
    )
    SearchBacklogImport.objects.create(rows=4)
    reader = web_client(live_web.url, role="reader")

    def exported(**params: str) -> list[str]:
        answer = reader.get("/api/data/export", params=params, timeout=30)
        assert answer.status_code == 200, answer.text
        return [line.split('"')[3] for line in answer.text.splitlines()]

    by_label = ["waiting 3", "waiting 1", "indexed 3", "indexed 1"]
    ordered = ["indexed 0", "indexed 2", "waiting 0", "waiting 2", *by_label[::-1]]
    assert exported(label="l1", ordering="-id") == by_label
    assert exported(ordering="label") == ordered
    assert drain_search_backlog() == 4
    assert exported(label="l1", ordering="-id") == by_label
    assert exported(ordering="label") == ordered
