"""web's /v2 routes in-process: the real ASGI app, the algorithm service at the network edge
(httpx.MockTransport), tokens committed for the module."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.web.conftest import InProcessWeb

INFER = "/v2/models/default/infer"


def text_input(texts: list[str]) -> dict[str, Any]:
    return {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}


def must_not_be_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"web called the algorithm service: {request.method} {request.url}")


def protocol_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"], body
    return body


@pytest.fixture
def web(web_as: Callable[[str | None], InProcessWeb]) -> InProcessWeb:
    return web_as("reader")


def test_one_text_for_the_label_shares_the_native_predict(web: InProcessWeb) -> None:
    def native(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/predict")
        assert json.loads(request.content) == {"texts": ["abc"]}
        return httpx.Response(200, json={"labels": ["len3"], "model_version": "v7"})

    body = {"id": "a", "inputs": [text_input(["abc"])], "outputs": [{"name": "label"}]}
    answer = web.ask(native, "POST", INFER, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_name": "default",
        "model_version": "v7",
        "id": "a",
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [1], "data": ["len3"]}],
    }


def test_other_requests_go_to_the_algorithm_services_v2_route_as_sent(web: InProcessWeb) -> None:
    body = {"inputs": [text_input(["a", "b"])], "parameters": {"x": 1}}
    reply = {"model_name": "default", "model_version": "v7", "outputs": []}

    def v2(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/models/default/versions/challenger/infer"
        assert json.loads(request.content) == body
        return httpx.Response(200, json=reply)

    answer = web.ask(v2, "POST", "/v2/models/default/versions/challenger/infer", json=body)
    assert (answer.status_code, answer.json()) == (200, reply)


@pytest.mark.parametrize(
    ("content", "headers", "code"),
    [
        (json.dumps({"inputs": [text_input(["  "])]}), {}, "validation_error"),
        (json.dumps({"inputs": [text_input(["a"] * 1001)]}), {}, "validation_error"),
        (json.dumps({"inputs": [{**text_input(["a"]), "shape": [2]}]}), {}, "invalid_request"),
        (json.dumps({"inputs": [text_input(["a"])], "id": None}), {}, "validation_error"),
        ("[" * 100_000, {}, "invalid_json"),
        ("[1]", {}, "invalid_request"),
        ("{}", {"Inference-Header-Content-Length": "2"}, "unsupported_media_type"),
    ],
)
def test_bad_requests_are_refused_before_the_hop(
    web: InProcessWeb, content: str, headers: dict[str, str], code: str
) -> None:
    answer = web.ask(must_not_be_called, "POST", INFER, content=content, headers=headers)
    protocol_error(answer, 400, code)


def test_errors_of_the_algorithm_service_answer_in_the_protocols_shape(web: InProcessWeb) -> None:
    def untrained(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "no_model", "detail": "Train a model first."})

    one = {"inputs": [text_input(["x"])], "outputs": [{"name": "label"}]}
    body = protocol_error(web.ask(untrained, "POST", INFER, json=one), 503, "no_model")
    assert body["error"] == "Train a model first."

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    protocol_error(web.ask(refuse, "GET", "/v2/health/ready"), 503, "algorithm_unavailable")


def test_every_route_needs_a_valid_token_and_its_method(
    web_as: Callable[[str | None], InProcessWeb],
) -> None:
    anonymous = web_as(None).ask(must_not_be_called, "GET", "/v2")
    protocol_error(anonymous, 401, "not_authenticated")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    stranger = InProcessWeb({"Authorization": "Bearer not-a-token"})
    protocol_error(stranger.ask(must_not_be_called, "GET", "/v2"), 401, "invalid_token")
    reader = web_as("reader")
    assert reader.ask(must_not_be_called, "GET", "/v2").json()["extensions"] == ["classification"]
    wrong = reader.ask(must_not_be_called, "GET", INFER)
    protocol_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"
