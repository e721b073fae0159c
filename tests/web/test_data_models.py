"""Rows per model name: `model` on writes and answers, `?model=` on list, export and import."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import redis
from rest_framework.test import APIClient

from core.serving_protocol import desired_key
from tests.helpers import assert_error, bearer
from tests.web.conftest import InProcessWeb
from web.registry.models import AuditEvent, RegisteredModel

NDJSON = "application/x-ndjson"
AS_NDJSON = {"headers": {"Content-Type": NDJSON}}


def no_algorithm(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the data API never calls the algorithm service ({request.url})")


def new_name(prefix: str = "topic") -> str:
    """A name no other test uses: each process remembers the names it has seen exist."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def texts(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["text"] for row in response.json()["results"]}


def test_rows_of_two_names_never_mix(api: APIClient) -> None:
    topic = new_name()
    created = api.post(
        "/api/data/",
        [
            {"text": "python packaging tools", "label": "python"},
            {"text": "python web framework", "label": "python", "model": topic},
            {"text": "perl regex module", "label": "perl", "model": topic},
        ],
        format="json",
    )
    assert created.status_code == 201, created.content
    assert [row["model"] for row in created.json()] == ["default", topic, topic]

    assert texts(api.get("/api/data/")) == {"python packaging tools"}
    assert texts(api.get(f"/api/data/?model={topic}")) == {
        "python web framework",
        "perl regex module",
    }
    assert texts(api.get(f"/api/data/?model={topic}&search=python")) == {"python web framework"}
    assert texts(api.get("/api/data/?search=python")) == {"python packaging tools"}
    assert texts(api.get(f"/api/data/?model={topic}&label=perl")) == {"perl regex module"}
    assert texts(api.get("/api/data/?label=perl")) == set()

    # A row id is global: GET by id answers any name's row, with its name.
    topic_row = created.json()[1]
    assert api.get(f"/api/data/{topic_row['id']}/").json()["model"] == topic


def test_import_and_export_keep_names_apart(asgi_db: Any, tokens: dict[str, str]) -> None:
    """Through the ASGI app (the export streams from a connection of its own: committed rows)."""
    spam = new_name("spam")
    body = (
        b'{"text": "win money now", "label": "spam"}\n{"text": "lunch at noon", "label": "ham"}\n'
    )
    default_body = b'{"text": "a default row", "label": "ham"}\n'
    web = InProcessWeb(bearer(tokens["editor"]))
    imported, default_imported, exported, default_exported, listed = web.send(
        no_algorithm,
        {"method": "POST", "url": f"/api/data/import?model={spam}", "content": body, **AS_NDJSON},
        {"method": "POST", "url": "/api/data/import", "content": default_body, **AS_NDJSON},
        {"method": "GET", "url": f"/api/data/export?model={spam}"},
        {"method": "GET", "url": "/api/data/export"},
        {"method": "GET", "url": "/api/data/"},
    )
    assert imported.status_code == default_imported.status_code == 201, imported.content
    assert exported.content == body  # the name's rows only, in import order
    assert default_exported.content == default_body
    assert [row["model"] for row in listed.json()["results"]] == ["default"]
    assert RegisteredModel.objects.filter(name=spam).exists()
    with redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2) as client:
        client.delete(desired_key(spam))


def test_import_rows_carry_no_model_of_their_own(api: APIClient) -> None:
    spam = new_name("spam")

    # Rows carry no model of their own: the import's ?model= is the one name of all its rows.
    own = b'{"text": "a text", "label": "x", "model": "other"}\n'
    error = assert_error(
        api.generic("POST", f"/api/data/import?model={spam}", own, content_type=NDJSON),
        400,
        "validation_error",
    )
    assert "model: Unknown field" in error["lines"][0]["reason"]
    assert "?model=" in error["lines"][0]["reason"]


def test_invalid_names_are_400_and_unknown_names_404(api: APIClient) -> None:
    for bad in ("Topic", "", "a b", "-x", "x" * 65, 5, None, "versions"):
        response = api.post("/api/data/", {"text": "t", "label": "l", "model": bad}, format="json")
        body = assert_error(response, 400, "validation_error")
        assert body["fields"]["model"], body
    for bad in ("Topic", "", "a%20b", "x" * 65):
        for path in ("/api/data/", "/api/data/export", "/api/data/import"):
            method = "POST" if path.endswith("import") else "GET"
            response = api.generic(method, f"{path}?model={bad}", b"", content_type=NDJSON)
            assert "model" in assert_error(response, 400, "validation_error")["fields"]
    reserved = api.generic("POST", "/api/data/import?model=aliases", b"", content_type=NDJSON)
    assert_error(reserved, 400, "validation_error")
    unknown = new_name("unknown")
    for path in (f"/api/data/?model={unknown}", f"/api/data/export?model={unknown}"):
        assert unknown in assert_error(api.get(path), 404, "not_found")["detail"]
    assert_error(api.get("/api/data/?model=versions"), 404, "not_found")  # never a name


def test_moving_a_row_to_another_name(api: APIClient) -> None:
    (row,) = api.post("/api/data/", [{"text": "misfiled", "label": "x"}], format="json").json()
    moved = new_name("moved")
    answer = api.patch(f"/api/data/{row['id']}/", {"model": moved}, format="json")
    assert answer.status_code == 200 and answer.json()["model"] == moved
    kept = api.put(f"/api/data/{row['id']}/", {"text": "refiled", "label": "x"}, format="json")
    assert kept.json()["model"] == moved  # a PUT without `model` keeps the row's name
    assert texts(api.get(f"/api/data/?model={moved}")) == {"refiled"}
    assert texts(api.get("/api/data/")) == set()


def test_the_first_rows_of_a_name_register_it_once_audited_and_announced(
    transactional_db: Any, api: APIClient
) -> None:
    name = new_name("sentiment")
    for text in ("good", "bad"):
        answer = api.post("/api/data/", {"text": text, "label": text, "model": name}, format="json")
        assert answer.status_code == 201, answer.content
    (event,) = AuditEvent.objects.filter(action="model.create", model=name)
    assert event.target == f"model:{name}" and event.actor.startswith("token:test-admin-")
    assert RegisteredModel.objects.get(name=name).created_by == event.actor
    # Announced after the commit: the serving processes know the name (no champion yet).
    with redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2) as client:
        desired = client.get(desired_key(name))
        client.delete(desired_key(name))
    assert desired is not None and json.loads(desired)["champion"] is None
