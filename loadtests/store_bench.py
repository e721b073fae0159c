"""The S3 model store against the model volume: predict throughput, alias moves, download cost.

Starts a scratch Redis and a SeaweedFS S3 gateway (core/harness/object_store.py), trains two
versions of the service's model (6 400 Debian package descriptions), publishes them on a model
volume and uploads them to the bucket. Then:

- throughput: round after round, the algorithm pool (`--workers` processes) serving the same
  champion from the volume and from the store (each alone, the order swapped every round), one
  wrk run of single-text predictions each;
- alias moves with the store: `--moves` moves between two versions every replica already
  downloaded once (warm), and moves to versions no replica has seen (cold: download, verify,
  load), each timed until every replica reports serving it;
- download and verify cost: one version fetched into an empty cache `--fetches` times
  (manifest and signature, both pickles streamed with their sha256, fsync, rename), per MB.

    python -m loadtests.store_bench [--rounds 2] [--seconds 10] [--moves 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store, make_client
from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import TrainedModel
from algorithm.ml.version_cache import VersionCache
from core import serving_protocol
from core.harness.embedded import new_password, start_redis
from core.harness.embedded import redis_url as embedded_redis_url
from core.harness.object_store import ObjectStore, start_object_store
from core.harness.scratch import free_port, make_scratch_dir
from core.process import Child, spawn, stop_children
from loadtests import bench_data
from loadtests.wrk import run_wrk

Trained = tuple[TrainedModel, dict[str, Any]]
BUCKET = "bench-models"
PREFIX = "textclf"
CONNECTIONS = 16
MOVE_TIMEOUT_SECONDS = 30.0


class Bench:
    def __init__(self, scratch: Path, args: argparse.Namespace) -> None:
        self.scratch, self.args = scratch, args
        self.children: list[Child] = []
        self.token = secrets.token_urlsafe(32)
        self.keys = SigningKeys.from_secrets([bench_data.SIGNING_KEY])
        self.model_root = scratch / "models"
        password = new_password()
        port = free_port()
        self.children.append(
            start_redis(scratch / "redis", port=port, password=password, log_path=self.log("r"))
        )
        self.redis_url = embedded_redis_url(port=port, password=password)
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.s3: ObjectStore = start_object_store(scratch / "s3", log_path=self.log("seaweedfs"))
        self.children.append(self.s3.child)
        self.s3.create_bucket(BUCKET)
        os.environ.update(self.s3.environment())  # make_client reads what the services read
        self.store = self.new_store(scratch / "publisher-cache")
        self.seq = 0

    def log(self, name: str) -> Path:
        return self.scratch / f"{name}-{time.monotonic_ns()}.log"

    def new_store(self, cache_dir: Path) -> S3Store:
        cache = VersionCache(cache_dir, max_bytes=2048 * 1024 * 1024)
        return S3Store(make_client(), bucket=BUCKET, prefix=PREFIX, cache=cache)

    def publish(self, trained: Trained, seed: int) -> str:
        """A version on the volume and in the bucket (a new id every time)."""
        version = bench_data.publish(self.model_root, trained, seed=seed)
        self.store.publish(self.model_root / version)
        return version

    def start_algorithm(self, *, s3: bool) -> tuple[Child, str]:
        port = free_port()
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
        env = {name: value for name, value in os.environ.items() if name in keep}
        env.update(
            VAR_DIR=str(self.scratch / "var"),
            MODEL_DIR=str(self.model_root if not s3 else self.scratch / "empty-models"),
            REDIS_URL=self.redis_url,
            ALGORITHM_TOKENS=self.token,
            MODEL_SIGNING_KEY=bench_data.SIGNING_KEY,
            ALGORITHM_PORT=str(port),
            ALGORITHM_WORKERS=str(self.args.workers),
            PYTHONUNBUFFERED="1",
        )
        if s3:
            cache = self.scratch / f"cache-{time.monotonic_ns()}"  # a new host: empty cache
            env.update(MODEL_STORE_URL=f"s3://{BUCKET}/{PREFIX}", MODEL_CACHE_DIR=str(cache))
            env.update(self.s3.environment())
        name = "algorithm-s3" if s3 else "algorithm-volume"
        child = spawn(name, [sys.executable, "-m", "algorithm"], env=env, log_path=self.log(name))
        self.children.append(child)
        return child, f"http://127.0.0.1:{port}"

    def announce(self, champion: str) -> float:
        self.seq += 1
        desired = serving_protocol.Desired(champion=champion, seq=self.seq)
        serving_protocol.announce(self.redis, desired)
        return time.perf_counter()

    def served_by_all(self, version: str) -> bool:
        reports = serving_protocol.read_reports(self.redis)
        return len(reports) == self.args.workers and serving_protocol.all_serve(reports, version)

    def move(self, champion: str) -> float:
        started = self.announce(champion)
        wait_for(lambda: self.served_by_all(champion), what=champion, timeout=MOVE_TIMEOUT_SECONDS)
        return time.perf_counter() - started

    def stop(self, child: Child) -> None:
        stop_children([child])
        self.children.remove(child)
        # A stopped process removes its own report; one killed leaves it until it expires.
        stale = list(self.redis.scan_iter(match=f"{serving_protocol.REPORT_KEY_PREFIX}*"))
        if stale:
            self.redis.delete(*stale)


def throughput(bench: Bench, champion: str, bodies: Path) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"volume": [], "s3": []}
    for round_no in range(1, bench.args.rounds + 1):
        order = ["volume", "s3"] if round_no % 2 else ["s3", "volume"]
        for kind in order:
            child, url = bench.start_algorithm(s3=kind == "s3")
            bench.announce(champion)
            wait_for(lambda: bench.served_by_all(champion), what=f"{kind} replicas", timeout=120)
            headers = {"Authorization": f"Bearer {bench.token}"}
            wait_for(partial(answers, url, headers), what=f"{kind} predict", timeout=60)
            run_wrk(
                f"{url}/predict",
                bodies,
                connections=CONNECTIONS,
                seconds=2,
                timeout_seconds=5,
                headers=headers,
            )  # warm-up
            result = run_wrk(
                f"{url}/predict",
                bodies,
                connections=CONNECTIONS,
                seconds=bench.args.seconds,
                timeout_seconds=5,
                headers=headers,
            )
            rates[kind].append(result.ok_per_second)
            print(
                f"round {round_no} {kind}: {result.ok_per_second:,.0f} ok/s, "
                f"{result.errors} errors, p50 {result.p50_us / 1000:.1f} ms, "
                f"p99 {result.p99_us / 1000:.1f} ms",
                flush=True,
            )
            bench.stop(child)
    return rates


def answers(url: str, headers: dict[str, str]) -> bool:
    try:
        response = httpx.post(f"{url}/predict", json={"text": "x"}, headers=headers, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def moves(
    bench: Bench, trained: list[Trained], first: str, second: str
) -> tuple[list[float], list[float]]:
    child, _ = bench.start_algorithm(s3=True)
    warm, cold = [], []
    bench.move(first)
    bench.move(second)  # both in every replica's cache now
    for index in range(bench.args.moves):
        warm.append(bench.move(first if index % 2 == 0 else second))
        time.sleep(0.2)
    for index in range(bench.args.cold_moves):
        fresh = bench.publish(trained[index % 2], seed=index % 2 + 1)
        cold.append(bench.move(fresh))
        time.sleep(0.2)
    bench.stop(child)
    return warm, cold


def fetch_cost(bench: Bench, version: str) -> tuple[float, list[float]]:
    """(MB of the version, seconds of each fetch into an empty cache)."""
    size = 0
    seconds = []
    for index in range(bench.args.fetches):
        host = bench.new_store(bench.scratch / f"fetch-{index}")
        started = time.perf_counter()
        directory = host.version_dir(version, signing_keys=bench.keys)
        seconds.append(time.perf_counter() - started)
        size = sum(path.stat().st_size for path in directory.iterdir())
        artifacts.load_version_dir(directory, signing_keys=bench.keys)  # it loads, as fetched
    return size / 1e6, seconds


def wait_for(probe: Callable[[], bool], *, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.005)


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--cold-moves", type=int, default=4)
    parser.add_argument("--fetches", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="algorithm processes")
    args = parser.parse_args(argv)
    scratch = make_scratch_dir("textclf-store-bench-")
    bench = None
    try:
        corpus = bench_data.load_corpus()
        bodies = bench_data.write_bodies(corpus, scratch, texts=1).path
        trained = [bench_data.train(corpus, seed=seed) for seed in (1, 2)]
        bench = Bench(scratch, args)
        first, second = (bench.publish(trained[i], seed=i + 1) for i in (0, 1))
        rates = throughput(bench, first, bodies)
        warm, cold = moves(bench, trained, first, second)
        megabytes, fetches = fetch_cost(bench, first)
        ratio = statistics.median(
            s3 / volume for s3, volume in zip(rates["s3"], rates["volume"], strict=True)
        )
        print(
            f"\n{args.workers} algorithm processes, {CONNECTIONS} connections, "
            f"{args.rounds} rounds of {args.seconds:g} s\n"
        )
        print("| measure | value |\n|---|---|")
        print(f"| predict, model volume | {statistics.median(rates['volume']):,.0f} ok/s |")
        print(f"| predict, S3 store | {statistics.median(rates['s3']):,.0f} ok/s |")
        print(f"| S3 / volume (median of per-round ratios) | {ratio:.2f} |")
        print(
            f"| alias move, every replica, cached version (n={len(warm)}): median, max | "
            f"{ms(warm)} |"
        )
        print(
            f"| alias move, every replica, new version (n={len(cold)}): median, max | {ms(cold)} |"
        )
        per_mb = statistics.median(fetches) / megabytes
        print(
            f"| download + verify, {megabytes:.2f} MB version (n={len(fetches)}): median | "
            f"{statistics.median(fetches) * 1000:.0f} ms ({per_mb * 1000:.0f} ms per MB) |"
        )
    finally:
        if bench is not None:
            bench.redis.close()
            stop_children(bench.children)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
