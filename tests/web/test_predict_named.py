"""Predicting by model name through web, in-process: the real ASGI app, the algorithm service at
the network edge (httpx.MockTransport), tokens committed for the module.

`{"model": "<name>", ...}` reaches the algorithm service in the body (absent: the body is the
one from before names existed), concurrent single texts are coalesced per name and never mixed,
the service's answers for a name (404 `model_not_found`, 503 `model_loading` with Retry-After)
are passed through, and a token limited to some names gets 403 for the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import assert_error, bearer
from tests.web.conftest import InProcessWeb

UNKNOWN, LOADING = "ghost", "cold"


def per_model(request: httpx.Request) -> httpx.Response:
    """A service serving every name but two: the label says which model answered which text."""
    body = json.loads(request.content)
    if request.url.path.startswith("/v2/"):
        name = request.url.path.split("/")[3]
        body = {"model": name, "texts": body["inputs"][0]["data"]}
    model = body.get("model", "default")
    if model == UNKNOWN:
        return httpx.Response(404, json={"error": "model_not_found", "detail": "No model ghost."})
    if model == LOADING:
        detail = {"error": "model_loading", "detail": "Model cold is loading; retry."}
        return httpx.Response(503, json=detail, headers={"Retry-After": "2"})
    texts = body["texts"] if "texts" in body else [body["text"]]
    if request.url.path.startswith("/v2/"):
        reply = {"model_name": model, "model_version": f"{model}-v1", "outputs": []}
        return httpx.Response(200, json=reply)
    labels = [f"{model}:{len(text)}" for text in texts]
    answer: dict[str, Any] = {"labels": labels, "model_version": f"{model}-v1"}
    if "text" in body:
        answer = {"label": labels[0], "model_version": f"{model}-v1"}
    if "top_k" in body:
        answer["scores"] = [{"label": labels[0], "score": 1.0}]
    return httpx.Response(200, json=answer)


def must_not_be_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"web called the algorithm service: {request.method} {request.url}")


@pytest.fixture
def web(web_as: Callable[[str | None], InProcessWeb]) -> InProcessWeb:
    return web_as("reader")


def test_concurrent_texts_are_coalesced_per_name_never_mixed(web: InProcessWeb) -> None:
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return per_model(request)

    named: list[dict[str, str]] = [{}, {"model": "topic"}, {"model": "sentiment"}]
    bodies = [{"text": "a" * n, **named[n % 3]} for n in range(1, 19)]
    answers = web.send(
        record,
        *({"method": "POST", "url": "/api/predict/", "json": body} for body in bodies),
        concurrently=True,
    )
    for body, answer in zip(bodies, answers, strict=True):
        model = body.get("model", "default")
        expected = {"label": f"{model}:{len(body['text'])}", "model_version": f"{model}-v1"}
        assert (answer.status_code, answer.json()) == (200, expected)
    assert all(set(call) in ({"texts"}, {"model", "texts"}) for call in sent), sent
    assert all(call.get("model") != "default" for call in sent)  # default names none
    assert len(sent) < len(bodies)  # texts of one name shared calls


def test_a_batch_and_scores_carry_the_name(web: InProcessWeb) -> None:
    many = web.ask(
        per_model, "POST", "/api/predict/", json={"model": "topic", "texts": ["a", "abc"]}
    )
    assert many.json() == {"labels": ["topic:1", "topic:3"], "model_version": "topic-v1"}
    scored = web.ask(
        per_model, "POST", "/api/predict", json={"model": "topic", "text": "ab", "top_k": 1}
    )
    assert scored.json()["scores"] == [{"label": "topic:2", "score": 1.0}]
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return per_model(request)

    for body in ({"text": "a"}, {"texts": ["a"]}, {"text": "a", "top_k": 1}):
        explicit = web.ask(record, "POST", "/api/predict/", json={"model": "default", **body})
        assert explicit.json()["model_version"] == "default-v1"
    assert [call.get("model") for call in sent] == [None, None, None]  # default goes unnamed


@pytest.mark.parametrize("name", ["Topic", "versions", "a_b", "", "x" * 65, 3, None, ["topic"]])
def test_a_name_that_is_not_a_slug_is_400_naming_the_field(web: InProcessWeb, name: Any) -> None:
    response = web.ask(
        must_not_be_called, "POST", "/api/predict/", json={"text": "a", "model": name}
    )
    error = assert_error(response, 400, "validation_error")
    assert "model" in error["fields"] and "model" in error["detail"]


def test_unknown_and_loading_models_answer_as_the_service_says(web: InProcessWeb) -> None:
    unknown = web.ask(per_model, "POST", "/api/predict/", json={"model": UNKNOWN, "text": "a"})
    assert assert_error(unknown, 404, "model_not_found")["detail"] == "No model ghost."
    for body in ({"text": "a"}, {"texts": ["a"]}, {"text": "a", "top_k": 1}):
        loading = web.ask(per_model, "POST", "/api/predict/", json={**body, "model": LOADING})
        assert_error(loading, 503, "model_loading")
        assert loading.headers["Retry-After"] == "2"
    infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    v2 = web.ask(per_model, "POST", f"/v2/models/{LOADING}/infer", json=infer)
    assert (v2.status_code, v2.json()["code"], v2.headers["Retry-After"]) == (
        503,
        "model_loading",
        "2",
    )


def test_v2_infer_passes_any_name_on(web: InProcessWeb) -> None:
    one_label = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
        "outputs": [{"name": "label"}],
    }
    answer = web.ask(per_model, "POST", "/v2/models/topic/infer", json=one_label)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_name"] == "topic"


@pytest.fixture(scope="module")
def limited_to_topic(module_tokens: dict[str, str], django_db_blocker: Any) -> Iterator[str]:
    """A reader token limited to `topic` (flushed with the module's tokens)."""
    from web.auth.roles import Role
    from web.auth.tokens import issue_token

    with django_db_blocker.unblock():
        name = f"topic-reader-{uuid.uuid4().hex[:8]}"
        yield issue_token(name=name, role=Role.READER, models=["topic"])[1]


def test_a_token_limited_to_names_is_403_for_the_others(limited_to_topic: str) -> None:
    web = InProcessWeb(bearer(limited_to_topic))
    allowed = web.ask(per_model, "POST", "/api/predict/", json={"model": "topic", "text": "a"})
    assert allowed.json()["label"] == "topic:1"
    for body in ({"model": "sentiment", "text": "a"}, {"text": "a"}, {"texts": ["a"]}):
        refused = web.ask(must_not_be_called, "POST", "/api/predict/", json=body)
        assert_error(refused, 403, "forbidden")
    infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    v2 = web.ask(must_not_be_called, "POST", "/v2/models/sentiment/infer", json=infer)
    assert (v2.status_code, v2.json()["code"]) == (403, "forbidden")
    metadata = web.ask(must_not_be_called, "GET", "/v2/models/default")
    assert metadata.status_code == 403
