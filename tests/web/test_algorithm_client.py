"""The algorithm client: retries, timeouts and coalescing, with httpx.MockTransport at the edge."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from web.algorithm_client import AlgorithmClient, AlgorithmTimeout, AlgorithmUnavailable


def make_client(handler: object, *, retries: int = 2) -> AlgorithmClient:
    return AlgorithmClient(
        "http://algorithm.test",
        timeout=1.0,
        connect_retries=retries,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


def test_connect_errors_are_retried_then_reported() -> None:
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    async def scenario() -> None:
        client = make_client(refuse, retries=2)
        with pytest.raises(AlgorithmUnavailable):
            await client.call("GET", "/health/live")
        await client.aclose()

    asyncio.run(scenario())
    assert attempts == ["/health/live"] * 3


def test_read_timeouts_are_not_retried() -> None:
    attempts = []

    def slow(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ReadTimeout("too slow", request=request)

    async def scenario() -> None:
        client = make_client(slow)
        with pytest.raises(AlgorithmTimeout):
            await client.call("POST", "/train")
        await client.aclose()

    asyncio.run(scenario())
    assert attempts == [1]  # the request may have arrived: never sent twice


def test_concurrent_single_predictions_share_calls_and_get_their_own_labels() -> None:
    calls = []

    def label_by_length(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        calls.append(len(texts))
        return httpx.Response(200, json={"labels": [f"len{len(t)}" for t in texts],
                                         "model_version": "v1"})  # fmt: skip

    async def scenario() -> list[dict[str, str]]:
        client = make_client(label_by_length)
        answers = await asyncio.gather(*(client.predict_one("x" * n) for n in range(1, 51)))
        await client.aclose()
        return [a.body for a in answers]

    bodies = asyncio.run(scenario())
    assert [b["label"] for b in bodies] == [f"len{n}" for n in range(1, 51)]
    assert all(b["model_version"] == "v1" for b in bodies)
    assert sum(calls) == 50 and len(calls) < 50


def test_service_errors_pass_through() -> None:
    def no_model(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "no_model", "detail": "train first"})

    async def scenario() -> tuple[int, object]:
        client = make_client(no_model)
        answer = await client.predict_one("text")
        await client.aclose()
        return answer.status, answer.body

    assert asyncio.run(scenario()) == (503, {"error": "no_model", "detail": "train first"})
