"""What the algorithm service's `POST /predict` costs beside its hello ceilings, in process.

Runs the service's ASGI app (`create_asgi_app`, as `python -m algorithm` serves it, minus
Hypercorn) in this process against a real Redis (embedded, started here), serving a model
trained on the Debian descriptions as `make bench` does (the test fixture's corpus with
`--fixture-corpus`). Three apps are timed interleaved, round after round, in microseconds of
this process's CPU per request, at 64 requests in flight and at 1 (`--in-flight N`: others;
under wrk the service's model calls take 6-9 texts, as at about 8 in flight here):

- `predict`: `POST /predict` with one text, the service token, every guard on;
- `algorithm_hello`: a constant `POST /hello` added to the same kind of app (its guards on);
- `hello`: the bare ceiling, loadtests/servers/flask_hello.py (no token, ids or metrics).

What the server adds (Hypercorn's HTTP parsing, ~30 % of a worker under load) is not in these
figures and is the same for all three, so the bench's ratio is (server + predict) / (server +
hello). Metrics are written in multiprocess mode, as the server pool does; `--profile` adds a
cProfile of `predict` at 64 in flight (`--profile-in-flight`).

    python -m loadtests.algorithm_path_cost [--requests 4000] [--rounds 5] [--in-flight 8]
        [--profile] [--texts N]

`--texts N` sends N texts a body (`{"texts": [...]}`), as web's coalesced calls do.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import secrets
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from core.harness.embedded import new_password, redis_url, start_redis
from core.harness.scratch import free_port, make_scratch_dir
from core.process import stop_children
from loadtests.asgi_request import http_scope, one_request

FIXTURE_CORPUS = Path(__file__).parent.parent / "tests" / "fixtures" / "debian_descriptions.jsonl"
CONCURRENCIES = (64, 1)
BODIES = 500
APPS = ("predict", "algorithm_hello", "hello")


def scope_of(path: str, token: str | None, body: bytes) -> dict[str, Any]:
    headers = [(b"user-agent", b"wrk")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return http_scope("POST", path, headers, body=body)


async def time_requests(
    app: Any, scopes: list[tuple[dict[str, Any], bytes]], requests: int, concurrency: int
) -> float:
    """Microseconds of this process's CPU per request, `concurrency` requests in flight."""
    statuses: list[int] = []

    async def client(offset: int, count: int) -> None:
        for index in range(count):
            scope, body = scopes[(offset + index) % len(scopes)]
            statuses.append(await one_request(app, scope, body))

    await asyncio.gather(*(client(n, 10) for n in range(concurrency)))  # warm the caches
    statuses.clear()
    per_client = max(1, requests // concurrency)
    started = time.process_time()
    await asyncio.gather(*(client(n * 7, per_client) for n in range(concurrency)))
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, sorted(set(statuses))
    return elapsed / len(statuses) * 1e6


async def start_lifespan(app: Any) -> asyncio.Task[None]:
    """Run the app's lifespan startup (follower, batchers) and keep it open."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    await queue.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise RuntimeError(message)

    task = asyncio.get_running_loop().create_task(app({"type": "lifespan"}, queue.get, send))
    await asyncio.wait_for(started.wait(), 30)
    return task


def load_texts(fixture_corpus: bool) -> list[tuple[str, str]]:
    if fixture_corpus:
        rows = [json.loads(line) for line in FIXTURE_CORPUS.read_text().splitlines()]
        return [(row["text"], row["label"]) for row in rows]
    from loadtests.bench_data import load_corpus

    return load_corpus()


def publish_model(model_root: Path, corpus: list[tuple[str, str]], signing_key: str) -> None:
    from algorithm.ml.artifacts import publish_model_version
    from algorithm.ml.signing import SigningKeys
    from algorithm.ml.training import train_model
    from loadtests.bench_data import TRAIN_ROWS
    from loadtests.corpus import sample_rows

    rows = list(sample_rows(corpus, min(TRAIN_ROWS, len(corpus)), seed=1))
    model, metrics = train_model([text for text, _ in rows], [label for _, label in rows], seed=1)
    publish_model_version(
        model_root,
        model,
        metrics=dict(metrics),
        rows=len(rows),
        fingerprint={"source": "algorithm_path_cost"},
        signing_keys=SigningKeys.from_secrets([signing_key]),
    )


async def measure(args: argparse.Namespace, token: str, texts: list[str]) -> None:
    from algorithm.service.app import create_asgi_app
    from core.heap import freeze_startup_heap
    from loadtests.servers import flask_hello

    predict_app = create_asgi_app()
    hello_app = create_asgi_app()
    hello_app.app.flask_app.add_url_rule(  # type: ignore[union-attr]
        "/hello", "hello", _constant, methods=["POST"]
    )
    lifespans = [await start_lifespan(predict_app), await start_lifespan(hello_app)]
    freeze_startup_heap()
    if args.texts == 1:
        bodies = [json.dumps({"text": text}).encode() for text in texts]
    else:  # a body of several texts, as web's coalesced calls send
        bodies = [
            json.dumps({"texts": [texts[(i + n) % len(texts)] for n in range(args.texts)]}).encode()
            for i in range(len(texts))
        ]
    runs = {
        "predict": (predict_app, [(scope_of("/predict", token, b), b) for b in bodies]),
        "algorithm_hello": (hello_app, [(scope_of("/hello", token, b), b) for b in bodies]),
        "hello": (flask_hello.app, [(scope_of("/predict", None, b), b) for b in bodies]),
    }
    runs = {name: run for name, run in runs.items() if name in (args.app or runs)}
    concurrencies = args.in_flight or CONCURRENCIES
    timings: dict[tuple[str, int], list[float]] = {
        (name, c): [] for name in runs for c in concurrencies
    }
    for round_no in range(args.rounds):
        order = list(runs.items()) if round_no % 2 == 0 else list(reversed(runs.items()))
        for name, (app, scopes) in order:
            for concurrency in concurrencies:
                requests = args.requests if concurrency > 1 else args.requests // 4
                timings[name, concurrency].append(
                    await time_requests(app, scopes, requests, concurrency)
                )
    for concurrency in concurrencies:
        hello = statistics.median(timings.get(("hello", concurrency)) or [0.0])
        print(f"{concurrency} in flight, median of {args.rounds} rounds:")
        for name in runs:
            values = timings[name, concurrency]
            median = statistics.median(values)
            each = ", ".join(f"{value:.0f}" for value in values)
            print(f"  {name:16s} {median:6.0f} us/request (+{median - hello:4.0f})  runs: {each}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await time_requests(predict_app, runs["predict"][1], args.requests, args.profile_in_flight)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    for task in lifespans:
        task.cancel()


async def _constant() -> dict[str, Any]:
    return {"label": "hello", "model_version": "algorithm-hello"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-in-flight", type=int, default=64, help="requests, profiled")
    parser.add_argument("--in-flight", type=int, action="append", help=f"default: {CONCURRENCIES}")
    parser.add_argument("--app", action="append", choices=APPS, help="default: all three")
    parser.add_argument("--texts", type=int, default=1, help="texts per body (default: one)")
    parser.add_argument("--fixture-corpus", action="store_true", help="the tests' small corpus")
    args = parser.parse_args()
    work_dir = make_scratch_dir("algorithm-path-cost-")
    port, password = free_port(), new_password()
    children = [
        start_redis(
            work_dir / "redis", port=port, password=password, log_path=work_dir / "redis.log"
        )
    ]
    try:
        token, signing_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        corpus = load_texts(args.fixture_corpus)
        publish_model(work_dir / "models", corpus, signing_key)
        (work_dir / "metrics").mkdir()
        os.environ.update(
            REDIS_URL=redis_url(port=port, password=password),
            MODEL_DIR=str(work_dir / "models"),
            VAR_DIR=str(work_dir / "var"),
            ALGORITHM_TOKENS=token,
            MODEL_SIGNING_KEY=signing_key,
            PROMETHEUS_MULTIPROC_DIR=str(work_dir / "metrics"),
        )
        from core.metrics import use_multiprocess_files

        use_multiprocess_files()  # as the pool's workers (the variable was set after import)
        texts = [text for text, _ in random.Random(4).sample(corpus, min(BODIES, len(corpus)))]
        asyncio.run(measure(args, token, texts))
    finally:
        stop_children(children)
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
