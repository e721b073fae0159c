"""`GET /health/live` of the algorithm service while one huge predict batch is labelled.

Starts Redis, trains the bench's model (Debian descriptions, as `make bench`), serves it with
`python -m algorithm` in one process, then, per size, sends one batch of 1 000 texts holding
that many characters in all (words of the corpus) and probes `/health/live` on the same
process every 10 ms from another thread until the batch is answered. Prints the batch's time
and the probes' count, median and maximum latency. The server takes up to the largest size
asked for (PREDICT_MAX_TOTAL_CHARS is raised to it).

    python -m loadtests.hostile_input [--chars 10000000 30000000] [--rounds 3] [--checkout DIR]

`--checkout` serves the algorithm service from another checkout (a `git worktree` of an older
commit, say), to see the same batch before a change.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from core.harness.scratch import make_scratch_dir
from core.process import stop_children
from loadtests import bench_data
from loadtests.bench import start_databases
from loadtests.bench_servers import ALGORITHM_ENV, BenchEnv, Scenario, start_server

TEXTS = 1_000
PROBE_INTERVAL = 0.01


def batch_body(corpus: list[tuple[str, str]], chars: int) -> bytes:
    """1 000 texts of chars / 1 000 characters each, cut from the corpus' words."""
    words = " ".join(text for text, _ in corpus).split()
    each, texts, at = chars // TEXTS, [], 0
    for _ in range(TEXTS):
        text, length = [], 0
        while length < each:
            word = words[at % len(words)]
            text.append(word)
            length += len(word) + 1
            at += 1
        texts.append(" ".join(text)[:each])
    return json.dumps({"texts": texts}).encode()


def probe_during(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, list[float]]:
    """Send `body` to /predict; probe /health/live until it is answered. (batch s, probe s)."""
    answered = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not answered.is_set():
                started = time.perf_counter()
                assert client.get("/health/live").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(PROBE_INTERVAL)

    prober = threading.Thread(target=probe)
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        started = time.perf_counter()
        prober.start()
        response = client.post(
            "/predict", content=body, headers={"Content-Type": "application/json"}
        )
        elapsed = time.perf_counter() - started
    answered.set()
    prober.join()
    assert response.status_code == 200, response.text[:300]
    return elapsed, latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[10_000_000, 30_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=None)
    args = parser.parse_args(argv)
    work_dir = make_scratch_dir("textclf-hostile-")
    env = BenchEnv(work_dir, secrets.token_urlsafe(50), secrets.token_urlsafe(32))
    children = start_databases(env, postgres=False)
    try:
        corpus = bench_data.load_corpus()
        bench_data.publish(env.model_root, bench_data.train(corpus, seed=1), seed=1)
        largest = max(args.chars)
        scenario = Scenario(
            "algorithm",
            "algorithm, one process",
            ("-m", "algorithm"),
            "/predict",
            {
                **ALGORITHM_ENV,
                "ALGORITHM_WORKERS": "1",
                "PREDICT_MAX_TOTAL_CHARS": str(largest),
                "PREDICT_MAX_BODY_BYTES": str(2 * largest + (1 << 20)),
            },
            checkout=args.checkout.resolve() if args.checkout else None,
        )
        server = start_server(scenario, env, b'{"text": "warm up"}')
        children += server.children
        headers = env.headers(scenario)
        print("| characters | batch s | probes | median ms | max ms |")
        print("|---|---|---|---|---|")
        for chars in args.chars:
            body = batch_body(corpus, chars)
            for _ in range(args.rounds):
                elapsed, latencies = probe_during(server.base_url, body, headers)
                median = statistics.median(latencies) * 1000
                print(
                    f"| {chars:,} | {elapsed:.2f} | {len(latencies)} | {median:.1f} "
                    f"| {max(latencies) * 1000:.1f} |",
                    flush=True,
                )
    finally:
        stop_children(children)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
