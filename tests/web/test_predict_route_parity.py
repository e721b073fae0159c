"""`/api/predict/` answers the same through the fast route as through Django's URL routing.

Every predict case, good and bad, is replayed in-process through `web.asgi.application` twice:
once with the fast route (web/proxy/predict_route.py) serving the path, once with Django's
handler serving it; status, headers and body must be equal. The algorithm service is played at
the network edge; each request carries a fixed X-Request-ID so the answers can be compared whole.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import httpx
import pytest

from tests.helpers import bearer
from tests.web.conftest import algorithm_played_by

Answer = tuple[int, list[tuple[str, str]], bytes]


def play_algorithm(request: httpx.Request) -> httpx.Response:
    """Labels by length; some texts stand for the service's own failures."""
    body = json.loads(request.content)
    texts = body["texts"] if "texts" in body else [body["text"]]
    if "no-model" in texts:
        return httpx.Response(503, json={"error": "no_model", "detail": "Train a model first."})
    if "down" in texts:
        raise httpx.ConnectError("refused", request=request)
    if body.get("model") == "ghost":
        return httpx.Response(404, json={"error": "model_not_found", "detail": "No model ghost."})
    if body.get("model") == "cold":
        loading = {"error": "model_loading", "detail": "Model cold is loading."}
        return httpx.Response(503, json=loading, headers={"Retry-After": "1"})
    if body.get("top_k") == 7:
        refusal = {"error": "invalid_request", "detail": "top_k: 7 > 3 labels."}
        return httpx.Response(400, json={**refusal, "fields": {"top_k": ["at most 3"]}})
    labels = [f"{body.get('model', '')}len{len(t)}" for t in texts]
    if "top_k" in body:
        scores = [[{"label": label, "score": 1.0}] for label in labels]
        answer: dict[str, Any] = {"labels": labels, "scores": scores}
        if "text" in body:
            answer = {"label": labels[0], "scores": scores[0]}
        return httpx.Response(200, json={**answer, "model_version": "v7"})
    return httpx.Response(200, json={"labels": labels, "model_version": "v7"})


def cases(tokens: dict[str, str]) -> list[dict[str, Any]]:
    from django.conf import settings

    over_cap = b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    reader = bearer(tokens["reader"])
    post = {"method": "POST", "url": "/api/predict/", "headers": reader}
    as_json = {**reader, "Content-Type": "application/json"}
    return [
        {**post, "json": {"text": "abc"}},
        {**post, "url": "/api/predict", "json": {"texts": ["a", "abcd"]}},
        {**post, "json": {"text": "abc", "top_k": 2}},
        {**post, "json": {"texts": ["a", "ab"], "top_k": 1}},
        {**post, "json": {"text": "abc", "top_k": 7}},  # 409: above the model's labels
        {**post, "json": {"text": "no-model"}},  # 503 passed through
        {**post, "json": {"text": "down"}},  # the service unreachable
        {**post, "json": {"text": "   "}},
        {**post, "json": {"text": "a", "texts": ["b"]}},
        {**post, "json": {"texts": []}},
        {**post, "json": {"text": "a", "top_k": 0}},
        {**post, "json": ["a"]},
        {**post, "content": b"{not json", "headers": as_json},
        {**post, "content": b"[" * 200 + b"]" * 200, "headers": as_json},
        {**post, "content": b"text=a", "headers": {**reader, "Content-Type": "text/plain"}},
        {**post, "content": over_cap, "headers": as_json},  # 413 over the route's cap
        {**post, "json": {"texts": ["x"] * 1001}},  # over PREDICT_MAX_TEXTS
        {**post, "json": {"model": "topic", "text": "abc"}},  # named models
        {**post, "json": {"model": "topic", "texts": ["a", "ab"]}},
        {**post, "json": {"model": "topic", "text": "abc", "top_k": 1}},
        {**post, "json": {"model": "ghost", "text": "abc"}},  # 404 passed through
        {**post, "json": {"model": "cold", "text": "abc"}},  # 503 with Retry-After
        {**post, "json": {"model": "Not A Slug", "text": "abc"}},
        {**post, "json": {"text": "abc"}, "headers": {}},  # 401 without a token
        {**post, "json": {"text": "abc"}, "headers": bearer("tcf_not-a-token")},  # 401
        {**post, "json": {"text": "abc"}, "headers": {"Authorization": "Basic eA=="}},
        {"method": "GET", "url": "/api/predict/", "headers": reader},  # 405 with Allow
        {"method": "PUT", "url": "/api/predict", "headers": reader, "json": {"text": "a"}},
        {"method": "OPTIONS", "url": "/api/predict/", "headers": reader},
    ]


async def replay(requests: list[dict[str, Any]]) -> list[Answer]:
    from web.asgi import application

    answers: list[Answer] = []
    transport = httpx.ASGITransport(app=cast(Any, application))
    async with (
        algorithm_played_by(play_algorithm),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web,
    ):
        for number, request in enumerate(requests):
            headers = {**request.get("headers", {}), "X-Request-ID": f"parity-{number}"}
            response = await web.request(**{**request, "headers": headers})
            answers.append(
                (response.status_code, sorted(response.headers.items()), response.content)
            )
    return answers


def test_every_predict_case_answers_the_same_through_both_routes(
    module_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.asgi
    from web.proxy.predict_route import PredictRoute

    class CountedRoute(PredictRoute):
        served = 0

        async def handle(self, *args: Any) -> None:
            CountedRoute.served += 1
            await super().handle(*args)

    requests = cases(module_tokens)
    monkeypatch.setattr(web.asgi, "predict_route", None)
    through_django = asyncio.run(replay(requests))
    fast = CountedRoute()
    assert fast.enabled
    monkeypatch.setattr(web.asgi, "predict_route", fast)
    through_fast_route = asyncio.run(replay(requests))

    for request, django_answer, fast_answer in zip(
        requests, through_django, through_fast_route, strict=True
    ):
        assert fast_answer == django_answer, request
    # The fast route served every request but the one web/edge/body_limits.py answered first.
    assert CountedRoute.served == len(requests) - 1
    statuses = {answer[0] for answer in through_django}
    assert statuses >= {200, 400, 401, 404, 405, 409, 413, 415, 503}  # the cases cover them
