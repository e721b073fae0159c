"""Time from an alias move to every algorithm process serving it, idle and while a worker trains.

Starts scratch Redis and PostgreSQL, publishes two versions of the service's model (trained on
6 400 Debian package descriptions), starts the algorithm pool and moves `champion` between the
two versions `--moves` times through the registry protocol (`serving_protocol.announce`). A move is
served when every replica's report names the new version (each process rewrites its report right
after the swap, so a prediction after that point is answered by the new version); the worker's
`current` link is timed too. Then a real Celery worker trains on `--rows` rows and the moves are
timed again; a move counts only if the training was running from its announcement to its end.

    python -m loadtests.move_to_served [--moves 20] [--workers 2] [--rows 200000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from algorithm.service.training_queue import TrainingQueue
from core import serving_protocol
from core.harness.embedded import new_password, postgres_url, start_postgres, start_redis
from core.harness.embedded import redis_url as embedded_redis_url
from core.harness.scratch import celery_worker_command, free_port, make_scratch_dir
from core.jobs import JobStore
from core.process import Child, spawn, stop_children
from loadtests import bench_data
from loadtests.train_bench import load_rows

POLL_SECONDS = 0.002
MOVE_TIMEOUT_SECONDS = 10.0


class Mover:
    """Announces champion moves and times them until every replica serves the new version."""

    def __init__(self, client: redis.Redis, model_root: Path, replicas: int) -> None:
        self.client, self.model_root, self.replicas = client, model_root, replicas
        self.seq = 0

    def announce(self, champion: str) -> float:
        self.seq += 1
        desired = serving_protocol.Desired(champion=champion, seq=self.seq)
        serving_protocol.announce(self.client, desired)
        return time.perf_counter()

    def served(self, version: str) -> bool:
        reports = serving_protocol.read_reports(self.client)
        return len(reports) == self.replicas and serving_protocol.all_serve(reports, version)

    def move(self, champion: str) -> tuple[float, float]:
        """(seconds until every replica serves `champion`, seconds until `current` names it)."""
        started = self.announce(champion)
        served_at = linked_at = None
        while served_at is None or linked_at is None:
            now = time.perf_counter()
            if now - started > MOVE_TIMEOUT_SECONDS:
                raise RuntimeError(f"{champion} not served within {MOVE_TIMEOUT_SECONDS} s")
            if served_at is None and self.served(champion):
                served_at = now
            if linked_at is None and os.readlink(self.model_root / "current") == champion:
                linked_at = now
            time.sleep(POLL_SECONDS)
        return served_at - started, linked_at - started


def time_moves(
    mover: Mover, versions: list[str], moves: int, *, training: Callable[[], bool] | None = None
) -> tuple[list[float], list[float]]:
    """Move champion back and forth `moves` times; the served and linked times of each move."""
    served: list[float] = []
    linked: list[float] = []
    while len(served) < moves:
        champion = versions[len(served) % 2]
        if training is not None and not training():
            raise RuntimeError("no training is running: start one with more --rows")
        seconds_served, seconds_linked = mover.move(champion)
        if training is None or training():  # still training: the move counts
            served.append(seconds_served)
            linked.append(seconds_linked)
        time.sleep(0.2)
    return served, linked


def summary(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {statistics.median(values) * 1000:.0f} ms "
        f"| {max(values) * 1000:.0f} ms |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="algorithm processes")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the training")
    args = parser.parse_args(argv)
    scratch = make_scratch_dir("textclf-moves-")
    children: list[Child] = []
    try:
        corpus = bench_data.load_corpus()
        model_root = scratch / "models"
        versions = [
            bench_data.publish(model_root, bench_data.train(corpus, seed=seed), seed=seed)
            for seed in (1, 2)
        ]
        pg_port, redis_port, algorithm_port = free_port(), free_port(), free_port()
        password = new_password()
        children.append(
            start_redis(
                scratch / "redis", port=redis_port, password=password, log_path=scratch / "r.log"
            )
        )
        children.append(
            start_postgres(
                scratch / "pg",
                port=pg_port,
                database="moves",
                password=password,
                log_path=scratch / "pg.log",
            )
        )
        database_url = postgres_url(port=pg_port, database="moves", password=password)
        redis_url = embedded_redis_url(port=redis_port, password=password)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "MODEL_DIR": str(model_root),
            "VAR_DIR": str(scratch / "var"),
            "ALGORITHM_PORT": str(algorithm_port),
            "ALGORITHM_WORKERS": str(args.workers),
            "MODEL_SIGNING_KEY": bench_data.SIGNING_KEY,
            "PYTHONUNBUFFERED": "1",
        }
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        mover = Mover(client, model_root, args.workers)
        children.append(
            spawn(
                "celery",
                celery_worker_command("moves"),
                env=env,
                log_path=scratch / "worker.log",
            )
        )
        argv = [sys.executable, "-m", "algorithm"]
        children.append(spawn("algorithm", argv, env=env, log_path=scratch / "algorithm.log"))
        mover.announce(versions[0])
        wait_for(lambda: mover.served(versions[0]), what="the algorithm processes")
        print(f"{args.workers} algorithm processes, versions {versions}", flush=True)
        idle = time_moves(mover, versions, args.moves)

        print(f"loading {args.rows:,} rows and starting a training", flush=True)
        load_rows(database_url, args.rows, corpus)
        jobs = JobStore(client)
        queue = TrainingQueue(redis_url)
        job_id = jobs.request_training(enqueue=queue.enqueue)["job_id"]
        queue.close()

        def training() -> bool:
            job = jobs.get(job_id)
            return job is not None and (job["progress"] or {}).get("phase") == "training"

        wait_for(training, what="the training phase", timeout=600)
        busy = time_moves(mover, versions, args.moves, training=training)
        print("| moves | n | median | max |\n|---|---|---|---|")
        print(summary("every process serves it, idle", idle[0]))
        print(summary("`current` names it, idle", idle[1]))
        print(summary("every process serves it, while training", busy[0]))
        print(summary("`current` names it, while training", busy[1]))
        client.close()
    finally:
        stop_children(children)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def wait_for(probe: Callable[[], bool], *, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
