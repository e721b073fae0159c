"""What each of web's middlewares costs `POST /api/predict/`, in process, side by side.

Runs web's Django handler in this process against real PostgreSQL and Redis (embedded, started
here), with the algorithm service played by an `httpx.MockTransport` that answers at once, so
what is timed is web's own work per request. Four middleware lists (web's own; without
authentication and rate limits; without request ids, metrics and the access line; without
either), and web's own list predicting with a named model, are timed interleaved,
`CONCURRENCY` requests in flight as under load, and the median microseconds per request of each
is printed; `--profile` adds a cProfile of web's own list.
Metrics are written in multiprocess mode and access lines to a file from a writer thread, as
the server pool does.

    python -m loadtests.predict_path_cost [--requests 4000] [--rounds 5] [--profile] [--route]

With `--route`, web's served path instead: web's predict route (web/proxy/predict_route.py,
what `web.asgi` serves `/api/predict/` with), alone and behind web.asgi's body limits, against
the same route answering with the ceiling's constant view (loadtests/servers/django_ceiling.py),
with the rate limiter installed as in web (and as the ceiling's server installs it);
interleaved, on uvloop. The difference is what a prediction adds to a request on that route.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

from core.harness.embedded import (
    new_password,
    postgres_url,
    redis_url,
    start_postgres,
    start_redis,
)
from core.harness.scratch import free_port, make_scratch_dir
from core.heap import freeze_startup_heap
from core.process import stop_children
from loadtests.asgi_request import http_scope, one_request
from loadtests.web_commands import prepare_web_database

CONCURRENCY = 64
GUARD = ("web.auth.middleware.authenticate", "web.edge.rate_limits.rate_limit")
OBSERVABILITY = ("web.edge.observability.observe_request",)
NAMED_MODEL = "bench-named"


def start_services(work_dir: Path) -> tuple[list[Any], dict[str, str], str]:
    """Embedded PostgreSQL (migrated, with a reader token) and Redis; their environment."""
    redis_port, pg_port, password = free_port(), free_port(), new_password()
    children = [
        start_redis(
            work_dir / "redis", port=redis_port, password=password, log_path=work_dir / "redis.log"
        ),
        start_postgres(
            work_dir / "pg",
            port=pg_port,
            database="cost",
            password=password,
            log_path=work_dir / "pg.log",
        ),
    ]
    token = "tcf_" + secrets.token_urlsafe(32)
    env = {
        "DATABASE_URL": postgres_url(port=pg_port, database="cost", password=password),
        "REDIS_URL": redis_url(port=redis_port, password=password),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / "metrics"),
        "ALGORITHM_TOKEN": secrets.token_urlsafe(32),
    }
    (work_dir / "metrics").mkdir()
    prepare_web_database({**os.environ, **env}, token=token, name="cost", role="reader")
    return children, env, token


def predict_scope(token: str, body: bytes) -> dict[str, Any]:
    authorization = [(b"authorization", f"Bearer {token}".encode())]
    return http_scope("POST", "/api/predict/", authorization, body=body)


async def time_requests(app: Any, token: str, requests: int, model: str | None = None) -> float:
    """Microseconds of this process's CPU per request, CONCURRENCY requests in flight; with
    `model`, every body names it."""
    text = {"text": "a small library for parsing command line options"}
    body = json.dumps(text if model is None else {"model": model, **text}).encode()
    scope = predict_scope(token, body)
    statuses: list[int] = []

    async def client(count: int) -> None:
        for _ in range(count):
            statuses.append(await one_request(app, scope, body))

    await asyncio.gather(*(client(10) for _ in range(CONCURRENCY)))  # warm the caches
    statuses.clear()
    started = time.process_time()
    await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, sorted(set(statuses))
    return elapsed / len(statuses) * 1e6


def handlers(middleware: list[str]) -> dict[str, Any]:
    """A Django ASGI handler per middleware list (the list is read when a handler is built)."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    from web.config import get_settings
    from web.edge import observability

    variants = {
        "web (everything on)": middleware,
        "authentication and rate limits off": [m for m in middleware if m not in GUARD],
        "request ids, metrics, access line off": [m for m in middleware if m not in OBSERVABILITY],
        "rate limits off": [m for m in middleware if m != GUARD[1]],
        "authentication off": [m for m in middleware if m != GUARD[0]],
        "both off": [m for m in middleware if m not in GUARD + OBSERVABILITY],
    }
    built = {}
    for name, names in variants.items():
        with override_settings(MIDDLEWARE=names):
            built[name] = ASGIHandler()
    # The access line is switched when a chain is built, from web's settings.
    flipped = get_settings().model_copy(update={"access_log": not get_settings().access_log})
    with (
        override_settings(MIDDLEWARE=middleware),
        mock.patch.object(observability, "get_settings", lambda: flipped),
    ):
        built[f"web, access line {'on' if flipped.access_log else 'off'}"] = ASGIHandler()
    return built


async def constant(request: Any) -> Any:
    """The ceiling's view (loadtests/servers/django_ceiling.py `constant`)."""
    from django.http import JsonResponse

    return JsonResponse({"label": "hello", "model_version": "django-ceiling"})


CEILING = "ceiling: the constant view, same route"


def route_handlers() -> dict[str, Any]:
    """Web's predict route (alone, and behind web.asgi's body limits), and the same route
    answering with the ceiling's constant view."""
    from django.urls import ResolverMatch

    from web.edge.body_limits import limit_web_bodies
    from web.proxy.predict_route import PredictRoute

    web, ceiling = PredictRoute(), PredictRoute()
    ceiling.match = ResolverMatch(
        constant, (), {}, url_name=web.match.url_name, route=web.match.route
    )
    bounded = limit_web_bodies(web)  # as web.asgi wraps every route
    return {
        "web: the predict route": web,
        "web: the predict route, body limits": bounded,
        CEILING: ceiling,
    }


async def measure(args: argparse.Namespace, token: str) -> None:
    import httpx
    from django.conf import settings

    from web.config import get_settings
    from web.edge import rate_limits
    from web.proxy import algorithm_client

    calls = [0, 0]  # calls to the algorithm service, texts sent

    async def algorithm(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        calls[0] += 1
        calls[1] += len(texts)
        await asyncio.sleep(args.algorithm_ms / 1000)  # the service's answer takes this long
        return httpx.Response(200, json={"labels": ["libs"] * len(texts), "model_version": "v1"})

    algorithm_client.install(
        algorithm_client.AlgorithmClient(
            "http://algorithm.test",
            timeout=5,
            connect_retries=0,
            transport=httpx.MockTransport(algorithm),
        )
    )
    rate_limits.install(rate_limits.limiter_from_settings(get_settings()))  # as web's lifespan
    apps = route_handlers() if args.route else handlers(list(settings.MIDDLEWARE))
    runs: list[tuple[str, Any, str | None]] = [(name, app, None) for name, app in apps.items()]
    if not args.route:  # the same chain predicting with a named model: what naming one costs
        runs.append(("web, a named model", apps["web (everything on)"], NAMED_MODEL))
    freeze_startup_heap()  # as web.asgi does once started
    timings: dict[str, list[float]] = {name: [] for name, *_ in runs}
    batch_sizes: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for _ in range(args.rounds):
        for name, app, model in runs:
            calls[:] = [0, 0]
            timings[name].append(await time_requests(app, token, args.requests, model))
            batch_sizes[name].append(calls[1] / calls[0] if calls[0] else 0.0)
    base = statistics.median(timings[CEILING if args.route else "both off"])
    for name, values in timings.items():
        median = statistics.median(values)
        batch = statistics.median(batch_sizes[name])
        each = ", ".join(f"{value:.0f}" for value in values)
        print(
            f"{name:40s} {median:7.0f} us/request  (+{median - base:4.0f})  "
            f"texts per call {batch:5.1f}  runs: {each}"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await time_requests(next(iter(apps.values())), token, args.requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--route", action="store_true", help="web's predict route vs its ceiling")
    parser.add_argument("--algorithm-ms", type=float, default=1.0, help="the service's latency")
    args = parser.parse_args()
    work_dir = make_scratch_dir("predict-path-cost-")
    children, env, token = start_services(work_dir)
    try:
        os.environ.update(env)
        access_log = open(work_dir / "web.log", "a")  # noqa: SIM115 - closed below
        os.dup2(access_log.fileno(), sys.stderr.fileno())  # log lines go to a file, as served
        import django

        from core.logs import configure_logging, write_logs_in_background

        django.setup()
        write_logs_in_background()  # as the server pool's workers write them
        configure_logging("text")
        if args.route:  # on the loop web's server runs (core/uvicorn_worker.py)
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(measure(args, token))
        else:
            asyncio.run(measure(args, token))
    finally:
        stop_children(children)
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
