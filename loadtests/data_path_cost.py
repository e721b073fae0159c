"""CPU time per request of the data API's reads, in process, one request at a time.

Web's ASGI application (`web.asgi`, the pooled-thread handler and every middleware) is called
directly, without an HTTP server or client, on the bench's own databases: embedded PostgreSQL
with the 2 000 rows `make bench` seeds, and Redis. What is timed is the process's CPU time
(every thread: the data views run in a lent thread), per request, for `GET /health/live` (no
database), one row, and list pages; five runs of each, interleaved, so the medians compare.
`--profile PATH` adds a cProfile of the lent threads' work for that path (cProfile sees one
thread, so the view is profiled by wrapping it).

    python -m loadtests.data_path_cost [--requests 200] [--profile /api/data/]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.process import stop_children
from loadtests import bench_data
from loadtests.asgi_request import http_scope, one_request
from loadtests.bench import start_databases
from loadtests.bench_servers import BenchEnv

RUNS = 5


def paths(row_id: int) -> list[str]:
    return [
        "/health/live",
        f"/api/data/{row_id}/",
        "/api/data/",
        "/api/data/?label=games",
        "/api/data/?search=python",
    ]


async def get(application: Any, path: str, token: bytes) -> int:
    """One GET through the ASGI application; its status."""
    scope = http_scope("GET", path, [(b"authorization", b"Bearer " + token)])
    return await one_request(application, scope, b"")


async def measure(application: Any, targets: Sequence[str], token: bytes, requests: int) -> None:
    for path in targets:  # warm: connections, caches, the lent threads
        for _ in range(20):
            status = await get(application, path, token)
            assert status == 200, (path, status)
    times: dict[str, list[float]] = {path: [] for path in targets}
    for _ in range(RUNS):
        for path in targets:
            started = time.process_time()
            for _ in range(requests):
                await get(application, path, token)
            times[path].append((time.process_time() - started) * 1000 / requests)
    print(f"| path | CPU ms per request (median of {RUNS} runs of {requests}) | runs |")
    print("|---|---|---|")
    for path, runs in times.items():
        listed = ", ".join(f"{t:.2f}" for t in runs)
        print(f"| `{path}` | {statistics.median(runs):.2f} | {listed} |")


async def profile(application: Any, path: str, token: bytes, requests: int) -> None:
    from rest_framework.views import APIView

    profiler = cProfile.Profile()
    dispatch = APIView.dispatch

    def profiled(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        return profiler.runcall(dispatch, self, request, *args, **kwargs)

    APIView.dispatch = profiled
    try:
        for _ in range(requests):
            await get(application, path, token)
    finally:
        APIView.dispatch = dispatch
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", metavar="PATH", help="cProfile the DRF view of this path")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="data-path-cost-"))
    work_dir.chmod(0o755)  # PostgreSQL runs as a system user of its own
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    databases = start_databases(env, postgres=True, corpus=bench_data.load_corpus())
    try:
        os.environ.update(env.service_env())
        os.environ.update(
            DJANGO_SETTINGS_MODULE="web.settings",
            ALGORITHM_URL="http://127.0.0.1:9",  # the data API never calls it
            ACCESS_LOG="false",  # the lines would go to this terminal
        )
        import django

        django.setup(set_prefix=False)
        from web.asgi import application

        token = env.api_token.encode()
        targets = paths(env.data_row_id)
        asyncio.run(measure(application, targets, token, args.requests))
        if args.profile:
            asyncio.run(profile(application, args.profile, token, args.requests))
    finally:
        stop_children(databases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
