"""The list at scale: indexes serve every variant, cursors walk every row once, no counting.

A module fixture loads BIG_ROWS rows by COPY (Debian descriptions varied as the benchmark does,
timestamps spread over a year) and ANALYZEs them, so the planner sees a table big enough to
prefer its indexes to a scan.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from loadtests.corpus import sample_rows
from web.data.models import BACKLOG_INDEX, LABEL_INDEX, TRIGRAM_INDEX
from web.data.search_backlog import BACKLOG_LABEL_INDEX, BUILD_BACKLOG_INDEXES_SQL

BIG_ROWS = 60_000
START = datetime(2026, 1, 1, tzinfo=UTC)
ORDERINGS = [
    f"{sign}{field}" for field in ("id", "label", "created_at", "updated_at") for sign in ("", "-")
]


@pytest.fixture(scope="module")
def big_table(
    django_db_setup: Any, django_db_blocker: Any, fixture_corpus: list[tuple[str, str]]
) -> Iterator[dict[str, str]]:
    """BIG_ROWS committed rows; returns words and labels to query for. Emptied afterwards."""
    rng = random.Random(5)
    step = timedelta(days=365) / BIG_ROWS
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY data (text, label, created_at, updated_at) FROM STDIN"
        ) as copy:
            for index, (text, label) in enumerate(sample_rows(fixture_corpus, BIG_ROWS, seed=3)):
                created = START + step * index
                copy.write_row((text, label, created, created + timedelta(hours=rng.random())))
        cursor.execute("ANALYZE data")
    try:
        yield {"common": "games", "rare_word": "x1e24", "label": "perl"}
    finally:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE data")


def plans_of(api: APIClient, query: str) -> list[str]:
    """EXPLAIN of every query on `data` that GET /api/data/?query runs."""
    with CaptureQueriesContext(connection) as captured:
        response = api.get(f"/api/data/?{query}")
    assert response.status_code == 200, response.content
    plans = []
    with connection.cursor() as cursor:
        for executed in captured.captured_queries:
            if '"data"' in executed["sql"]:
                cursor.execute(f"EXPLAIN {executed['sql']}")
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    assert plans, captured.captured_queries
    return plans


@pytest.mark.parametrize(
    "query",
    [
        *(f"ordering={o}" for o in ORDERINGS),
        *(f"label=perl&ordering={o}" for o in ORDERINGS),
        "search=x1e24",
        "search=x1e24&label=perl",
        "search=x1e24&ordering=-created_at",
        "search=games",
        "search=games&ordering=-updated_at",
    ],
)
def test_list_queries_read_an_index_and_never_scan_or_sort_the_table(
    api: APIClient, big_table: dict[str, str], query: str
) -> None:
    for plan in plans_of(api, query):
        assert "Seq Scan" not in plan, plan
        if "search" in query:
            continue
        if query.startswith("label=") and "_at" in query:
            # No (label, time) index: the time index filtered by label, or the label's own
            # rows read through the label index and sorted, never the table's.
            assert "Sort" not in plan or LABEL_INDEX in plan, plan
        else:
            assert "Sort" not in plan, plan  # rows come out of the index in page order


@pytest.mark.parametrize("label", ["perl", "rare-label"])
def test_a_label_with_a_time_ordering_never_sorts_more_than_that_label(
    api: APIClient, big_table: dict[str, str], label: str
) -> None:
    from web.data.models import Data

    Data.objects.bulk_create(Data(text=f"rare row {i}", label="rare-label") for i in range(40))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE data")
    for ordering in ("created_at", "-updated_at"):
        (plan,) = plans_of(api, f"label={label}&ordering={ordering}")
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan or LABEL_INDEX in plan, plan
        page = api.get(f"/api/data/?label={label}&ordering={ordering}&page_size=20").json()
        field = ordering.lstrip("-")
        keys = [(row[field], row["id"]) for row in page["results"]]
        assert keys == sorted(keys, reverse=ordering.startswith("-")) and len(keys) == 20
        assert {row["label"] for row in page["results"]} == {label}


@pytest.mark.parametrize("query", ["search=x1e24", "search=x1e24&ordering=-label"])
def test_search_for_a_rare_word_reads_the_trigram_index(
    api: APIClient, big_table: dict[str, str], query: str
) -> None:
    # No import waits for the trigram index: the backlog is not read at all (after a big
    # drain, its index holds a dead entry per drained row until VACUUM).
    (indexed,) = plans_of(api, query)
    assert TRIGRAM_INDEX in indexed, indexed
    found = api.get(f"/api/data/?{query}").json()["results"]
    assert found and all("x1e24" in row["text"].lower() for row in found)


@pytest.mark.parametrize("ordering", ["id", "-created_at"])
def test_a_common_word_is_read_in_the_pages_order_not_gathered_and_sorted(
    api: APIClient, big_table: dict[str, str], ordering: str
) -> None:
    # "python" is in one text of six: the statistics on UPPER(text) say so, and the page is
    # read from the ordering's own index until it is full, not every match sorted for it.
    (plan,) = plans_of(api, f"search=python&ordering={ordering}")
    assert "Sort" not in plan and TRIGRAM_INDEX not in plan, plan
    page = api.get(f"/api/data/?search=python&ordering={ordering}").json()["results"]
    field = ordering.lstrip("-")
    keys = [(row[field], row["id"]) for row in page]
    assert len(page) == 50 and all("python" in row["text"].lower() for row in page)
    assert keys == sorted(keys, reverse=ordering.startswith("-"))


@pytest.mark.parametrize("ordering", ["-created_at"])
def test_a_common_words_pages_follow_one_another_in_order_every_match_once(
    api: APIClient, big_table: dict[str, str], ordering: str
) -> None:
    from web.data.models import Data

    # Each page walks from its cursor (a page of 1 000 reads ~6 000 rows), so pages join up.
    tie = "-id" if ordering.startswith("-") else "id"
    expected = Data.objects.filter(text__icontains="python").order_by(ordering, tie)
    walked = _walk(api, f"search=python&ordering={ordering}&page_size=1000")
    assert walked == list(expected.values_list("id", flat=True)) and len(walked) > 5000


def test_a_word_only_in_the_newest_rows_is_not_walked_to_from_the_oldest(
    api: APIClient, big_table: dict[str, str]
) -> None:
    from web.data.models import Data
    from web.data.search_pages import WALK_ROWS

    # One text in twenty holds it, all of them the newest: common by the statistics, but a
    # walk from the oldest row would read the whole table before its first match.
    Data.objects.bulk_create(Data(text=f"Qzwvk tool {i}", label="new") for i in range(3000))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE data")
    walk, gathered = plans_of(api, "search=qzwvk")
    assert f"LIMIT {WALK_ROWS}" in walk.upper() or f"rows={WALK_ROWS}" in walk, walk
    # Then every match gathered (here a scan: one row in twenty of 63 000) and sorted.
    assert "CTE matches" in gathered and "Sort" in gathered, gathered
    page = api.get("/api/data/?search=qzwvk").json()["results"]
    assert [row["text"] for row in page] == [f"Qzwvk tool {i}" for i in range(50)]


def test_a_label_and_a_search_read_only_that_labels_matches_from_the_index(
    api: APIClient, big_table: dict[str, str]
) -> None:
    from web.data.models import Data

    word = big_table["rare_word"]
    label = Data.objects.filter(text__icontains=word).values_list("label", flat=True).first()
    query = f"label={label}&search={word}&ordering=-id"
    # At 60 000 rows the planner may as well read the label's 10 000 rows through the label's
    # own index (at a million, the trigram index wins: docs/data.md); dropped inside this
    # test's transaction, so that the plan shows what the trigram index itself answers.
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {LABEL_INDEX}")
    (plan,) = plans_of(api, query)
    lines = plan.splitlines()
    assert TRIGRAM_INDEX in plan, plan
    index_scan = next(at for at, line in enumerate(lines) if TRIGRAM_INDEX in line)
    assert "label" in lines[index_scan + 1] and word.upper() in lines[index_scan + 1], plan
    page = api.get(f"/api/data/?{query}").json()["results"]
    assert page and all(r["label"] == label and word in r["text"].lower() for r in page)
    assert [r["id"] for r in page] == sorted((r["id"] for r in page), reverse=True)


def test_search_reads_the_trigram_index_and_the_backlog_and_finds_rows_of_both(
    api: APIClient, big_table: dict[str, str]
) -> None:
    from web.data.models import Data, SearchBacklogImport

    newest = Data.objects.latest("id").id
    Data.objects.filter(id__gt=newest - 3000).update(search_indexed=False)  # as after an import
    SearchBacklogImport.objects.create(rows=3000)
    probes = Data.objects.bulk_create(
        Data(text=f"probe Vbnmq {i}", label="probe", search_indexed=i % 2 == 0) for i in range(6)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE data")
    # The indexed rows from the trigram index, the waiting ones from the backlog's, then the
    # page's rows of both by primary key, in the page's order.
    indexed, waiting, page = plans_of(api, "search=vbnmq")
    assert TRIGRAM_INDEX in indexed and BACKLOG_INDEX in waiting and "data_pkey" in page
    assert not any("Seq Scan" in plan for plan in (indexed, waiting, page))
    assert _walk(api, "search=VBNMQ&page_size=4") == [row.id for row in probes]


@pytest.mark.parametrize("query", ["label=perl&ordering=-id", "ordering=label"])
def test_a_list_by_label_reads_the_label_indexes_of_indexed_and_waiting_rows(
    api: APIClient, big_table: dict[str, str], query: str
) -> None:
    from web.data.models import Data, SearchBacklogImport

    newest = Data.objects.latest("id").id
    Data.objects.filter(id__gt=newest - 3000).update(search_indexed=False)  # as after an import
    SearchBacklogImport.objects.create(rows=3000)
    with connection.cursor() as cursor:  # as a drain builds it (concurrently, outside this test)
        cursor.execute(BUILD_BACKLOG_INDEXES_SQL[0].replace(" CONCURRENTLY", ""))
        cursor.execute("ANALYZE data")
    # The page's indexed rows, its waiting rows (none in an ascending label order: the page's
    # bound is below them), then both by primary key in the page's order.
    indexed, waiting, *page = plans_of(api, query)
    assert LABEL_INDEX in indexed, indexed
    assert BACKLOG_LABEL_INDEX in waiting or BACKLOG_INDEX in waiting, waiting
    assert not any("Seq Scan" in plan or "Sort " in plan for plan in (indexed, waiting))
    rows = Data.objects.filter(label="perl") if query.startswith("label=") else Data.objects
    ordering = query.split("ordering=")[1]
    tie = "-id" if ordering.startswith("-") else "id"
    expected = list(rows.order_by(ordering, tie).values_list("id", flat=True)[:50])
    assert [row["id"] for row in api.get(f"/api/data/?{query}").json()["results"]] == expected


@pytest.mark.parametrize("waiting", [False, True])
def test_an_export_by_label_and_search_asks_once_whether_an_import_waits(
    api: APIClient, waiting: bool
) -> None:
    from web.data.models import SearchBacklogImport
    from web.data.search_backlog import IMPORTS_LEFT_SQL

    if waiting:
        SearchBacklogImport.objects.create(rows=1)
    with CaptureQueriesContext(connection) as captured:
        response = api.get("/api/data/export", {"label": "perl", "search": "games"})
    assert response.status_code == 200
    asked = [q for q in captured.captured_queries if q["sql"] == IMPORTS_LEFT_SQL]
    assert len(asked) == 1


def test_unfiltered_list_estimates_instead_of_counting(
    api: APIClient, big_table: dict[str, str]
) -> None:
    with CaptureQueriesContext(connection) as captured:
        page = api.get("/api/data/").json()
    assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
    assert page["count_is_estimate"] is True
    assert abs(page["count"] - BIG_ROWS) < BIG_ROWS * 0.05
    filtered = api.get("/api/data/?label=perl").json()
    assert filtered["count"] is None and filtered["next"]


def _walk(api: APIClient, query: str, *, between_pages: Any = None) -> list[int]:
    ids: list[int] = []
    url: str | None = f"/api/data/?{query}"
    while url:
        page = api.get(url).json()
        ids += [row["id"] for row in page["results"]]
        url = page["next"]
        if between_pages:
            between_pages()
    return ids


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_cursor_walk_sees_every_row_once_while_rows_are_inserted(
    api: APIClient, big_table: dict[str, str], ordering: str
) -> None:
    from web.data.models import Data

    before = set(Data.objects.filter(label="perl").values_list("id", flat=True))
    rng = random.Random(ordering)

    def insert_rows() -> None:  # new rows before, inside and after the walked range
        for _ in range(3):
            moment = START + timedelta(days=rng.uniform(-30, 400))
            Data.objects.create(text="inserted during the walk", label="perl")
            Data.objects.filter(pk=Data.objects.latest("id").pk).update(
                created_at=moment, updated_at=moment
            )

    walked = _walk(api, f"label=perl&ordering={ordering}&page_size=500", between_pages=insert_rows)
    assert len(walked) == len(set(walked)), "a row was served twice"
    assert before <= set(walked), f"{len(before - set(walked))} rows were skipped"


def test_previous_links_walk_back_the_same_rows(api: APIClient, big_table: dict[str, str]) -> None:
    forward = _walk(api, "label=perl&ordering=-updated_at&page_size=700")
    last = api.get("/api/data/?label=perl&ordering=-updated_at&page_size=700").json()
    while last["next"]:
        last = api.get(last["next"]).json()
    backward = [row["id"] for row in last["results"]]
    url = last["previous"]
    while url:
        page = api.get(url).json()
        backward = [row["id"] for row in page["results"]] + backward
        url = page["previous"]
    assert backward == forward
