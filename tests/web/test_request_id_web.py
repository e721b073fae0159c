"""Request ids in web: accepted or made, returned on every answer, sent to the algorithm service."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.logs import JsonFormatter
from tests.helpers import assert_error
from tests.web.conftest import AlgorithmHandler, InProcessWeb


@pytest.fixture
def web(web_as: Callable[[str | None], InProcessWeb]) -> InProcessWeb:
    """The API needs a token: a reader's on every request."""
    return web_as("reader")


def labels_and_ids(seen: list[str | None]) -> AlgorithmHandler:
    """An algorithm service that labels texts and notes the request id of every call."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Request-ID"))
        texts = json.loads(request.content)["texts"]
        return httpx.Response(200, json={"labels": ["x"] * len(texts), "model_version": "v1"})

    return answer


def predict(text: str, request_id: str | None = None) -> dict[str, Any]:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return {"method": "POST", "url": "/api/predict/", "json": {"text": text}, "headers": headers}


def test_the_callers_id_comes_back_and_reaches_the_algorithm_service(web: InProcessWeb) -> None:
    seen: list[str | None] = []
    [response] = web.send(labels_and_ids(seen), predict("abc", "client-id-42"))
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "client-id-42"
    assert seen == ["client-id-42"]


def test_without_an_id_web_makes_one_and_sends_that(web: InProcessWeb) -> None:
    seen: list[str | None] = []
    first, second = web.send(
        labels_and_ids(seen), predict("a"), {"method": "GET", "url": "/api/x"}, concurrently=True
    )
    made = first.headers["X-Request-ID"]
    assert len(made) == 32 and made != second.headers["X-Request-ID"]
    assert seen == [made]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'a"quote', "semi;colon"])
def test_an_unusable_id_is_replaced(web: InProcessWeb, bad: str) -> None:
    [response] = web.send(labels_and_ids([]), predict("a", bad))
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_error_answers_carry_the_id_too(web: InProcessWeb) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    headers = {"X-Request-ID": "err-1"}
    not_found, invalid, unavailable = web.send(
        down,
        {"method": "GET", "url": "/no/such/page", "headers": headers},
        {"method": "POST", "url": "/api/predict/", "json": {"text": ""}, "headers": headers},
        predict("a", "err-1"),
        concurrently=True,
    )
    for response, status in ((not_found, 404), (invalid, 400), (unavailable, 503)):
        assert_error(response, status)
        assert response.headers["X-Request-ID"] == "err-1"


def test_a_coalesced_call_carries_the_id_of_its_first_request(web: InProcessWeb) -> None:
    seen: list[str | None] = []
    ids = [f"req-{i}" for i in range(20)]
    responses = web.send(
        labels_and_ids(seen), *(predict(f"t{i}", ids[i]) for i in range(20)), concurrently=True
    )
    assert [r.headers["X-Request-ID"] for r in responses] == ids
    assert len(seen) < 20, "the concurrent predictions were not coalesced"
    assert set(seen) <= set(ids)


def test_access_line_names_route_status_and_id(
    web: InProcessWeb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    web.send(labels_and_ids([]), {"method": "GET", "url": "/api/train/job-7/", "headers": {}})
    web.send(labels_and_ids([]), predict("a", "logged-1"))
    [line] = [r for r in caplog.records if getattr(r, "request_id", None) == "logged-1"]
    entry = json.loads(JsonFormatter().format(line))
    assert entry["message"].startswith("POST /api/predict/ 200 ")
    expected = {
        "logger": "web.access",
        "level": "INFO",
        "request_id": "logged-1",
        "method": "POST",
        "route": "/api/predict/",
        "status": 200,
    }
    assert {key: entry[key] for key in expected} == expected
    assert entry["duration_ms"] >= 0 and entry["time"].endswith("+00:00")
    routes = {getattr(r, "route", None) for r in caplog.records}
    assert "/api/train/{job_id}/" in routes  # the template, never the raw path


def test_log_lines_outside_a_request_say_so() -> None:
    make_record = logging.getLogRecordFactory()
    record = make_record("x", logging.INFO, __file__, 1, "started %s", ("ok",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "started ok" and entry["request_id"] == "-"
