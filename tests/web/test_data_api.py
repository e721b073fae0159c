"""The /api/data/ endpoints on a real PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.helpers import assert_error
from web.data.models import Data


def test_create_retrieve_update_delete_round_trip(api: APIClient) -> None:
    created = api.post("/api/data/", {"text": "cheap flights", "label": "travel"}, format="json")
    assert created.status_code == 201
    row = created.json()
    assert row["text"] == "cheap flights" and row["label"] == "travel"
    assert row["created_at"] and row["updated_at"]

    url = f"/api/data/{row['id']}/"
    assert api.get(url).json() == row

    replaced = api.put(url, {"text": "cheap hotels", "label": "travel"}, format="json")
    assert replaced.status_code == 200 and replaced.json()["text"] == "cheap hotels"

    changed = api.patch(url, {"label": "hotels"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["label"] == "hotels" and changed.json()["text"] == "cheap hotels"
    assert Data.objects.get(pk=row["id"]).label == "hotels"

    assert api.delete(url).status_code == 204
    assert_error(api.get(url), 404, "not_found")


def test_urls_work_without_trailing_slash(api: APIClient, make_rows: Any) -> None:
    (row,) = make_rows(("a text", "x"))
    assert api.get(f"/api/data/{row['id']}").status_code == 200
    assert api.post("/api/data", {"text": "t", "label": "y"}, format="json").status_code == 201


def test_list_is_paginated_by_cursor_with_capped_page_size(api: APIClient, make_rows: Any) -> None:
    make_rows(*[(f"text number {i}", "even" if i % 2 == 0 else "odd") for i in range(120)])
    first = api.get("/api/data/").json()
    assert first["count"] == 120 and len(first["results"]) == 50 and first["next"]
    assert first["previous"] is None and first["count_is_estimate"] is False
    assert [r["text"] for r in first["results"][:2]] == ["text number 0", "text number 1"]
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    assert len(third["results"]) == 20 and third["next"] is None
    assert api.get(third["previous"]).json()["results"] == second["results"]
    assert len(api.get("/api/data/?page_size=7").json()["results"]) == 7
    huge = api.get("/api/data/?page_size=100000").json()
    assert len(huge["results"]) == 120  # capped at the maximum (1000), not refused


def test_label_filter_search_and_ordering(api: APIClient, make_rows: Any) -> None:
    make_rows(
        ("Python packaging tools", "python"),
        ("Perl regex module", "perl"),
        ("python bindings for libfoo", "libs"),
        ("A regex engine", "libs"),
    )
    libs = api.get("/api/data/?label=libs").json()
    assert {r["text"] for r in libs["results"]} == {"python bindings for libfoo", "A regex engine"}
    found = api.get("/api/data/?search=PYTHON").json()
    assert {r["label"] for r in found["results"]} == {"python", "libs"}
    by_label = api.get("/api/data/?ordering=-label").json()["results"]
    assert [r["label"] for r in by_label] == ["python", "perl", "libs", "libs"]
    both = api.get("/api/data/?label=libs&search=regex").json()
    assert [r["text"] for r in both["results"]] == ["A regex engine"]


def test_bulk_create_of_ten_thousand_rows(api: APIClient) -> None:
    body = [
        {"text": f"row {i} about topic {i % 7}", "label": f"topic{i % 7}"} for i in range(10_000)
    ]
    response = api.post("/api/data/", body, format="json")
    assert response.status_code == 201
    created = response.json()
    assert len(created) == 10_000 and all(r["id"] for r in created)
    assert Data.objects.count() == 10_000


def test_bulk_with_one_bad_item_creates_nothing_and_names_it(api: APIClient) -> None:
    body: list[dict[str, object]] = [{"text": "fine", "label": "ok"}] * 5
    body = [*body[:3], {"text": "", "label": "ok"}, *body[3:], {"text": "x", "label": 7}]
    body_error = assert_error(api.post("/api/data/", body, format="json"), 400, "validation_error")
    assert [item["index"] for item in body_error["items"]] == [3, 6]
    assert "text" in body_error["items"][0]["fields"]
    assert "label" in body_error["items"][1]["fields"]
    assert "nothing was created" in body_error["detail"]
    assert Data.objects.count() == 0


def test_bulk_limits(api: APIClient) -> None:
    assert_error(api.post("/api/data/", [], format="json"), 400, "validation_error")
    too_many = [{"text": "t", "label": "l"}] * 10_001
    error = assert_error(api.post("/api/data/", too_many, format="json"), 400, "validation_error")
    assert "10000" in error["detail"]
    assert Data.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": "x"}, "text"),
        ({"text": "some text"}, "label"),
        ({"text": "", "label": "x"}, "text"),
        ({"text": "   ", "label": "x"}, "text"),
        ({"text": "t", "label": ""}, "label"),
        ({"text": 12, "label": "x"}, "text"),
        ({"text": "t", "label": True}, "label"),
        ({"text": None, "label": "x"}, "text"),
        ({"text": ["a", "b"], "label": "x"}, "text"),
        ({"text": {"a": 1}, "label": "x"}, "text"),
        ({"text": "t", "label": "l" * 101}, "label"),
        ({"text": "t" * 100_001, "label": "x"}, "text"),
        ({"text": "t", "label": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_fields_get_400_with_field_errors(api: APIClient, body: Any, field: str) -> None:
    error = assert_error(api.post("/api/data/", body, format="json"), 400, "validation_error")
    assert field in error["fields"]
    assert Data.objects.count() == 0


def test_unknown_field_on_update_is_refused(api: APIClient, make_rows: Any) -> None:
    (row,) = make_rows(("t", "l"))
    response = api.patch(f"/api/data/{row['id']}/", {"id": 99, "lable": "x"}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert set(error["fields"]) == {"id", "lable"}


def test_malformed_json_and_wrong_content_type(api: APIClient) -> None:
    bad_json = api.generic("POST", "/api/data/", '{"text": "x", ', content_type="application/json")
    assert_error(bad_json, 400, "invalid_json")
    form = api.post(
        "/api/data/", "text=x&label=y", content_type="application/x-www-form-urlencoded"
    )
    assert_error(form, 415, "unsupported_media_type")
    scalar = api.post("/api/data/", "42", content_type="application/json")
    assert_error(scalar, 400, "validation_error")
    assert Data.objects.count() == 0


def test_unknown_ids_urls_and_methods(api: APIClient) -> None:
    assert_error(api.get("/api/data/999999/"), 404, "not_found")
    assert_error(api.get("/api/data/abc/"), 404, "not_found")
    assert_error(api.get("/api/nothing-here/"), 404, "not_found")
    assert_error(api.get("/"), 404, "not_found")
    assert_error(api.put("/api/data/", {}, format="json"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "query",
    [
        "page=2",
        "page_size=0",
        "page_size=x",
        "ordering=nope",
        "ordering=label,id",
        "cursor=abc",
        "cursor=eyJvIjoiaWQiLCJrIjpbMV0sImIiOmZhbHNlfQ&ordering=-id",
        "search=ab",
        "search=abc%09de",
    ],
)
def test_bad_list_parameters_get_4xx(api: APIClient, make_rows: Any, query: str) -> None:
    make_rows(("t", "l"))
    response = api.get(f"/api/data/?{query}")
    assert 400 <= response.status_code < 500
    assert response.json()["error"] in {"validation_error", "not_found"}


def test_a_nul_character_in_label_or_search_matches_no_row(api: APIClient, make_rows: Any) -> None:
    make_rows(("a text", "l"))
    for query in ("label=l%00", "search=text%00"):
        page = api.get(f"/api/data/?{query}").json()
        assert page["results"] == [] and page["count"] == 0
    assert [r["text"] for r in api.get("/api/data/?search=a%C2%85text").json()["results"]] == []


DEEP = 5_000  # levels: far beyond Python's recursion limit
TOO_DEEP = ["[" * DEEP + "]" * DEEP, '{"a": ' * DEEP + "1" + "}" * DEEP, "[" * 33 + "]" * 33]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/data/"),
        ("put", "/api/data/{id}/"),
        ("patch", "/api/data/{id}/"),
        ("put", "/api/models/aliases/challenger/"),
    ],
)
def test_json_nested_too_deep_is_400_on_every_write(
    api: APIClient, make_rows: Any, method: str, path: str
) -> None:
    (row,) = make_rows(("a text", "x"))
    for body in TOO_DEEP:
        response = getattr(api, method)(
            path.format(id=row["id"]), body, content_type="application/json"
        )
        assert "deep" in assert_error(response, 400, "invalid_json")["detail"]
    assert Data.objects.get().text == "a text"


def test_a_cursor_nested_too_deep_is_404_like_any_cursor_not_given_out(
    api: APIClient, make_rows: Any
) -> None:
    make_rows(("t", "l"))
    for raw in TOO_DEEP:
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        assert_error(api.get(f"/api/data/?cursor={cursor}"), 404, "not_found")


def test_a_rows_own_url_honours_search_as_the_list_does(api: APIClient, make_rows: Any) -> None:
    """Filters apply to one row as to the list (DRF's rule): a row the search excludes is 404."""
    (row,) = make_rows(("Python packaging tools", "python"))
    url = f"/api/data/{row['id']}/"
    assert api.get(url, {"search": "packag"}).json() == row
    assert_error(api.get(url, {"search": "kernel"}), 404, "not_found")
    assert_error(api.delete(f"{url}?search=kernel"), 404, "not_found")
    assert api.get(url).status_code == 200  # the refused delete deleted nothing
