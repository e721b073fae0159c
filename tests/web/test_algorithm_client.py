"""The algorithm client: retries, timeouts and coalescing, with httpx.MockTransport at the edge."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from web.errors import AlgorithmTimeout, AlgorithmUnavailable
from web.proxy.algorithm_client import AlgorithmClient


def make_client(
    handler: object, *, retries: int = 2, token: str | None = None, **options: Any
) -> AlgorithmClient:
    return AlgorithmClient(
        "http://algorithm.test",
        timeout=1.0,
        connect_retries=retries,
        token=token,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        **options,
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
        return httpx.Response(
            200, json={"labels": [f"len{len(t)}" for t in texts], "model_version": "v1"}
        )

    async def scenario() -> list[dict[str, str]]:
        client = make_client(label_by_length)
        answers = await asyncio.gather(*(client.predict_one("x" * n) for n in range(1, 51)))
        await client.aclose()
        return [a.body for a in answers]

    bodies = asyncio.run(scenario())
    assert [b["label"] for b in bodies] == [f"len{n}" for n in range(1, 51)]
    assert all(b["model_version"] == "v1" for b in bodies)
    assert sum(calls) == 50 and len(calls) < 50


def test_a_text_queued_in_the_next_loop_turn_shares_the_call() -> None:
    """A request the loop wakes while the first one's call is being started goes with it."""
    calls: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        calls.append(texts)
        return httpx.Response(
            200, json={"labels": [t.upper() for t in texts], "model_version": "v1"}
        )

    async def scenario() -> list[bytes | None]:
        client = make_client(answer)
        first = asyncio.create_task(client.predict_one("a"))
        await asyncio.sleep(0)  # the first text is queued and its call started
        second = asyncio.create_task(client.predict_one("b"))
        answers = await asyncio.gather(first, second)
        await client.aclose()
        return [a.content for a in answers]

    contents = asyncio.run(scenario())
    assert calls == [["a", "b"]]
    # Each request's answer, as web sends it: what JsonResponse would have encoded.
    assert contents == [
        json.dumps({"label": label, "model_version": "v1"}).encode() for label in ("A", "B")
    ]


def test_service_errors_pass_through() -> None:
    def no_model(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "no_model", "detail": "train first"})

    async def scenario() -> tuple[int, object]:
        client = make_client(no_model)
        answer = await client.predict_one("text")
        await client.aclose()
        return answer.status, answer.body

    assert asyncio.run(scenario()) == (503, {"error": "no_model", "detail": "train first"})


def test_coalesced_calls_stay_small_when_texts_are_long() -> None:
    sizes = []

    def count(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        sizes.append(sum(len(t) for t in texts))
        return httpx.Response(200, json={"labels": ["l"] * len(texts), "model_version": "v1"})

    async def scenario() -> list[int]:
        client = make_client(count, batch_max_chars=100)
        answers = await asyncio.gather(*(client.predict_one("x" * 40) for _ in range(10)))
        too_long = await client.predict_one("y" * 150)  # alone, never refused for its size
        await client.aclose()
        return [a.status for a in [*answers, too_long]]

    assert asyncio.run(scenario()) == [200] * 11
    assert sum(sizes) == 550 and max(sizes[:-1]) <= 100 and sizes[-1] == 150


@pytest.mark.parametrize(
    "answer",
    [
        {"labels": ["only one"], "model_version": "v1"},  # fewer labels than texts
        {"unexpected": "shape"},
    ],
)
def test_a_malformed_answer_fails_every_waiter_instead_of_hanging(answer: object) -> None:
    def malformed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    async def scenario() -> list[object]:
        client = make_client(malformed)
        waiters = (client.predict_one(text) for text in ("a", "b", "c"))
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
        await client.aclose()
        return list(results)

    results = asyncio.run(scenario())
    assert results and all(isinstance(r, AlgorithmUnavailable) for r in results)


def test_a_text_that_cannot_be_sent_fails_instead_of_hanging() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    async def scenario() -> None:
        client = make_client(unreachable)
        with pytest.raises(AlgorithmUnavailable):
            await asyncio.wait_for(client.predict_one("\ud800"), 5)
        await client.aclose()

    asyncio.run(scenario())


def test_every_call_sends_the_service_token_and_a_refused_token_is_503_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "web-service-token-for-this-test"
    seen = []

    def check_token(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.url.path == "/train":  # as if web's token had been dropped from the list
            return httpx.Response(401, json={"error": "unauthorized", "detail": "refused"})
        return httpx.Response(200, json={"labels": ["a"], "model_version": "v1"})

    async def scenario() -> AlgorithmUnavailable:
        client = make_client(check_token, token=token)
        await client.predict_one("x")
        await client.call("POST", "/predict", json={"texts": ["y"]})
        with pytest.raises(AlgorithmUnavailable) as refused:
            await client.call("POST", "/train")
        await client.aclose()
        return refused.value

    error = asyncio.run(scenario())
    assert seen == [f"Bearer {token}"] * 3
    assert error.status == 503 and "credentials" in error.detail
    assert token not in str(error.body()) and token not in caplog.text
    assert "ALGORITHM_TOKENS" in caplog.text  # the log tells the operator what to fix


def test_a_slow_model_does_not_hold_back_the_texts_of_another() -> None:
    """Each name has its own queue: a name whose call is slow never delays another name's."""
    release = asyncio.Event()

    async def slow_for_one_name(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("model") == "slow":
            await release.wait()
        labels = [body.get("model", "default")] * len(body["texts"])
        return httpx.Response(200, json={"labels": labels, "model_version": "v1"})

    async def scenario() -> list[str]:
        client = make_client(slow_for_one_name)
        slow = asyncio.ensure_future(client.predict_one("a", "slow"))
        await asyncio.sleep(0)  # its call is in flight
        others = [
            await asyncio.wait_for(client.predict_one("b", "fast"), 2),
            await asyncio.wait_for(client.predict_one("c"), 2),
        ]
        assert not slow.done()
        release.set()
        labels = [answer.body["label"] for answer in [*others, await slow]]
        await client.aclose()
        return labels

    assert asyncio.run(scenario()) == ["fast", "default", "slow"]
