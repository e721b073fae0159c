"""Rate limits: scopes, 429 with Retry-After, Redis outages, and one limit over two processes.

In-process tests talk to `web.asgi.application` through httpx's ASGI transport with a limiter on
a real Redis database of their own and the algorithm service at the network edge
(httpx.MockTransport). The shared-limit test starts two real web processes on one Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import httpx
import pytest
from django.test import RequestFactory

from core.harness.scratch import free_port
from tests.helpers import ServiceStarter, assert_error
from tests.web.conftest import algorithm_played_by
from web.asgi import application
from web.edge import rate_limits
from web.edge.rate_limiter import Scope, SharedRateLimiter

Request = tuple[str, str, dict[str, Any]]  # method, path, httpx arguments
SCOPES = ("predict", "reads", "writes", "train")
SOME_ADDRESSES = ("192.0.2.10", "192.0.2.11")


def limiter(redis_url: str, **per_minute: int) -> SharedRateLimiter:
    """A limiter with the given limits (every other scope off) and web's outage policies."""
    return SharedRateLimiter(
        redis_url,
        [Scope(name, per_minute.get(name, 0), fail_open=name != "train") for name in SCOPES],
    )


def algorithm(request: httpx.Request) -> httpx.Response:
    """A trained algorithm service with a queue."""
    if request.url.path == "/predict":
        return httpx.Response(200, json={"labels": ["lib"], "model_version": "v1"})
    return httpx.Response(202, json={"job_id": "j1", "status": "queued"})


async def send(
    limits: SharedRateLimiter,
    requests: list[Request],
    *,
    client_address: str = "127.0.0.1",
) -> list[httpx.Response]:
    """Send `requests` (method, path, httpx arguments) in order to web with `limits` installed."""
    rate_limits.install(limits)
    transport = httpx.ASGITransport(app=cast(Any, application), client=(client_address, 40000))
    try:
        async with (
            algorithm_played_by(algorithm),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web,
        ):
            return [
                await web.request(method, path, **options) for method, path, options in requests
            ]
    finally:
        rate_limits.install(None)
        await limits.aclose()


def bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def predict(token: str | None = None) -> Request:
    return (
        "POST",
        "/api/predict/",
        {"json": {"text": "a regex engine"}, **(bearer(token) if token else {})},
    )


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/api/predict/", "predict"),
        ("POST", "/api/train/", "train"),
        ("GET", "/api/train/some-job/", "reads"),
        ("GET", "/api/data/", "reads"),
        ("POST", "/api/data/", "writes"),
        ("DELETE", "/api/data/1/", "writes"),
        ("POST", "/api/data/import", "writes"),
        ("GET", "/api/data/export", "reads"),
        ("GET", "/api/schema/", None),
        ("GET", "/api/docs/", None),
        ("GET", "/health/ready", None),
        ("GET", "/api/no-such-route/", None),
    ],
)
def test_each_route_counts_against_its_scope(method: str, path: str, scope: str | None) -> None:
    request = RequestFactory().generic(method, path)
    assert rate_limits.scope_of(request) == scope


def test_over_the_limit_is_429_with_retry_after_per_token(
    redis_db_url: str, asgi_db: Any, tokens: dict[str, str]
) -> None:
    token, other = tokens["reader"], tokens["editor"]
    answers = asyncio.run(
        send(limiter(redis_db_url, predict=3), [predict(token)] * 5 + [predict(other)])
    )
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429, 200]
    body = assert_error(answers[3], 429, "rate_limited")
    assert "3 a minute" in body["detail"]
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
    for answer in answers:
        assert token not in answer.text and token not in str(answer.headers)


def test_scopes_are_separate(redis_db_url: str, asgi_db: Any, tokens: dict[str, str]) -> None:
    admin = tokens["admin"]
    train: Request = ("POST", "/api/train/", bearer(admin))
    invalid_row: Request = ("POST", "/api/data/", {"json": {}, **bearer(admin)})  # a 400, no write
    answers = asyncio.run(
        send(
            limiter(redis_db_url, predict=2, train=2, writes=1),
            [train, train, train, *[predict(admin)] * 3, invalid_row, invalid_row],
        )
    )
    assert [a.status_code for a in answers] == [202, 202, 429, 200, 200, 429, 400, 429]
    for refused in (answers[2], answers[5], answers[7]):
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1


def test_callers_without_a_token_count_by_address() -> None:
    """Where no token identifies the caller (the guard-off bench web), the address does."""
    first, second = (RequestFactory().post("/api/predict/", REMOTE_ADDR=a) for a in SOME_ADDRESSES)
    assert rate_limits.client_key(first) != rate_limits.client_key(second)
    assert rate_limits.client_key(first) == rate_limits.client_key(
        RequestFactory().post("/api/predict/", REMOTE_ADDR=SOME_ADDRESSES[0])
    )


def test_a_redis_outage_keeps_predictions_and_writes_going_and_stops_training(
    caplog: pytest.LogCaptureFixture, asgi_db: Any, tokens: dict[str, str]
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    train: Request = ("POST", "/api/train/", bearer(tokens["editor"]))
    answers = asyncio.run(
        send(limiter(down, predict=5, train=5), [predict(tokens["reader"])] * 20 + [train])
    )
    assert [a.status_code for a in answers[:20]] == [200] * 20  # fail open, no 500
    assert time.monotonic() - started < 10  # Redis is not asked again on every request
    assert_error(answers[20], 503, "rate_limit_unavailable")
    assert int(answers[20].headers["Retry-After"]) >= 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "Redis" in r.message]
    assert len(warnings) == 1  # once per pause, not once per request

    async def write_while_down() -> bool:
        limits = limiter(down, writes=5)
        try:
            return (await limits.acquire("writes", "address:192.0.2.1")).allowed
        finally:
            await limits.aclose()

    assert asyncio.run(write_while_down())


@pytest.mark.slow
def test_one_client_on_two_processes_gets_the_limit_once(
    start_service: ServiceStarter,
    redis_db_url: str,
    test_database_url: str,
    transactional_db: Any,
    tokens: dict[str, str],
) -> None:
    limit = 8
    # The calls that pass the limiter reach a closed port: 503, but counted all the same.
    env = {
        "REDIS_URL": redis_db_url,
        "DATABASE_URL": test_database_url,  # where the test's tokens are
        "ALGORITHM_URL": f"http://127.0.0.1:{free_port()}",
        "ALGORITHM_CONNECT_RETRIES": "0",
        "RATE_LIMIT_PREDICT_PER_MINUTE": str(limit),
    }
    starting = [start_service.launch("web", **env) for _ in range(2)]  # side by side
    first, second = (service.wait() for service in starting)
    headers = {"Authorization": f"Bearer {tokens['reader']}"}
    answers: dict[str, list[httpx.Response]] = {first: [], second: []}
    with httpx.Client(timeout=10, headers=headers) as client:
        for number in range(2 * limit + 4):
            web = first if number % 2 == 0 else second
            answers[web].append(client.post(f"{web}/api/predict/", json={"text": "a regex"}))
    admitted = {web: sum(a.status_code != 429 for a in got) for web, got in answers.items()}
    assert sum(admitted.values()) == limit, admitted
    assert all(count > 0 for count in admitted.values()), admitted  # both took their share
    for got in answers.values():
        for answer in got:
            if answer.status_code == 429:
                assert_error(answer, 429, "rate_limited")
                assert int(answer.headers["Retry-After"]) >= 1
            else:
                assert_error(answer, 503, "algorithm_unavailable")


def test_the_schema_declares_429_on_every_limited_operation(client: Any) -> None:
    paths = client.get("/api/schema/?format=json").json()["paths"]
    # Callers without a token are limited per address everywhere but the liveness probe.
    limited = {p: ops for p, ops in paths.items() if p != "/health/live"}
    assert {"/api/predict/", "/api/train/", "/api/data/", "/api/schema/"} <= set(limited)
    for path, operations in limited.items():
        for method, operation in operations.items():
            assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)
    train_503 = paths["/api/train/"]["post"]["responses"]["503"]["description"]
    assert "rate_limit_unavailable" in train_503
    assert "429" not in paths["/health/live"]["get"]["responses"]  # never limited


def test_reserving_ahead_never_admits_more_than_redis_counted(redis_db_url: str) -> None:
    """Concurrent requests on a batched limit: reserved ahead, never over what Redis counted."""
    per_minute = 20_000  # a batch of 20: reservations ahead of need, in the background
    requests = per_minute + 200

    async def burst() -> tuple[int, float]:
        limits = limiter(redis_db_url, predict=per_minute)
        try:

            async def client(count: int) -> int:
                allowed = 0
                for _ in range(count):
                    allowed += (await limits.acquire("predict", "token:burst")).allowed
                    await asyncio.sleep(0)  # other requests interleave, as under a server
                return allowed

            admitted = sum(await asyncio.gather(*(client(requests // 50) for _ in range(50))))
            stats = await limits._strategy.get_window_stats(
                limits._items["predict"], "predict", "token:burst"
            )
            return admitted, stats.remaining
        finally:
            await limits.aclose()

    admitted, remaining = asyncio.run(burst())
    assert admitted <= per_minute  # the sum is what Redis counted, never more
    batch = Scope("predict", per_minute, fail_open=True).batch
    assert admitted >= per_minute - 2 * batch  # reserved-ahead tokens lapse, a few at most
    assert remaining == 0
