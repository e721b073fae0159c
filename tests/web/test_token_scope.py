"""Tokens limited to some model names: their own names' rows, 403 for every other name's."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import assert_error, bearer
from tests.web.conftest import InProcessWeb
from web.auth.models import ApiToken
from web.auth.roles import Role
from web.auth.tokens import issue_token
from web.data.models import Data
from web.registry.models import RegisteredModel

NDJSON = {"Content-Type": "application/x-ndjson"}


def no_algorithm(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the data API never calls the algorithm service ({request.url})")


def test_a_limited_token_uses_its_names_and_no_other(asgi_db: Any) -> None:
    """Through the ASGI app and its async middleware, as the servers run it."""
    topic, other = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("topic", "other"))
    RegisteredModel.objects.create(name=other)
    own = Data.objects.create(text="a topic row", label="a", model=topic)
    RegisteredModel.objects.create(name=topic)
    others = Data.objects.create(text="a default row", label="a")
    _, secret = issue_token(name=f"limited-{topic}", role=Role.EDITOR, models=[topic])
    web = InProcessWeb(bearer(secret))

    allowed = web.send(
        no_algorithm,
        {"method": "GET", "url": f"/api/data/?model={topic}"},
        {"method": "GET", "url": f"/api/data/{own.id}/"},
        {
            "method": "POST",
            "url": "/api/data/",
            "json": {"text": "t", "label": "b", "model": topic},
        },
        {"method": "GET", "url": f"/api/data/export?model={topic}"},
        {
            "method": "POST",
            "url": f"/api/data/import?model={topic}",
            "content": b'{"text":"x","label":"y"}\n',
            "headers": NDJSON,
        },
    )
    assert [r.status_code for r in allowed] == [200, 200, 201, 200, 201], allowed[-1].text
    assert [row["text"] for row in allowed[0].json()["results"]] == ["a topic row"]

    refused = web.send(
        no_algorithm,
        {"method": "GET", "url": "/api/data/"},  # no ?model= means default
        {"method": "GET", "url": f"/api/data/?model={other}"},
        {"method": "POST", "url": "/api/data/", "json": {"text": "t", "label": "b"}},
        {
            "method": "POST",
            "url": "/api/data/",
            "json": [
                {"text": "t", "label": "b", "model": topic},
                {"text": "t", "label": "b", "model": other},
            ],
        },
        {"method": "PATCH", "url": f"/api/data/{own.id}/", "json": {"model": other}},
        {"method": "GET", "url": f"/api/data/export?model={other}"},
        {
            "method": "POST",
            "url": "/api/data/import",
            "content": b'{"text":"x","label":"y"}\n',
            "headers": NDJSON,
        },
    )
    for response in refused:
        body = assert_error(response, 403, "forbidden")
        assert f"limited-{topic}" in body["detail"] and topic in body["detail"], body
    assert "'default'" in refused[0].json()["detail"]
    # A row of another name is not there for this token; an unknown name of its own is 404.
    hidden = web.send(
        no_algorithm,
        {"method": "GET", "url": f"/api/data/{others.id}/"},
        {"method": "DELETE", "url": f"/api/data/{others.id}/"},
    )
    for response in hidden:
        assert_error(response, 404, "not_found")
    assert Data.objects.filter(id=others.id).exists()
    assert Data.objects.filter(model=topic).count() == 3  # nothing refused was written
    assert not Data.objects.filter(model=other).exists()


def test_createtoken_limits_a_token_to_valid_names_and_listtokens_shows_them(db: Any) -> None:
    call_command(
        "createtoken",
        "--name",
        "sorter",
        "--role",
        "reader",
        "--models",
        "topic,spam,topic",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert ApiToken.objects.get(name="sorter").models == ["spam", "topic"]
    for bad in ("Topic", "topic,", "versions"):
        with pytest.raises(CommandError, match="model name"):
            call_command(
                "createtoken",
                "--name",
                "bad",
                "--role",
                "reader",
                "--models",
                bad,
                stdout=StringIO(),
                stderr=StringIO(),
            )
    issue_token(name="everything", role=Role.ADMIN)
    listed = StringIO()
    call_command("listtokens", stdout=listed)
    lines = {line.split()[1]: line.split()[-1] for line in listed.getvalue().splitlines()[1:]}
    assert lines["sorter"] == "spam,topic" and lines["everything"] == "*"
