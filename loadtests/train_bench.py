"""Training time and peak memory per phase, at several row counts, on realistic rows.

Loads N rows sampled from Debian's package descriptions (loadtests.corpus) into a scratch embedded
PostgreSQL migrated as web migrates it (the data table with its indexes, the registry the worker
records runs in) with COPY, then, each in a fresh process so peak memory is its own: a read-only
pass (stream every row and fingerprint it, keep nothing) and the worker's training function
itself (worker.tasks.train_job: read, train, publish; no broker). Peak RSS is VmHWM, reset per
phase.

    python -m loadtests.train_bench --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

from core.harness.embedded import (
    new_password,
    postgres_url,
    redis_url,
    start_postgres,
    start_redis,
)
from core.harness.scratch import free_port, make_scratch_dir
from core.jobs import JobStore
from core.process import stop_children
from loadtests.corpus import load_debian_corpus, sample_rows
from loadtests.web_commands import run_web_command
from worker.config import get_settings
from worker.rows import DataFingerprint, database_engine, stream_training_rows


def peak_mib(field: str = "VmHWM") -> int:
    """This process's peak (or, with VmRSS, current) resident memory in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024)
    raise KeyError(field)


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure_read() -> dict[str, Any]:
    """Stream every row and fingerprint it, keeping nothing."""
    settings = get_settings()
    fingerprint = DataFingerprint()

    async def read() -> None:
        engine = database_engine(settings.database_url)
        chunk_rows = settings.read_chunk_rows
        try:
            rows = stream_training_rows(engine, chunk_rows=chunk_rows, fingerprint=fingerprint)
            async for _ in rows:
                pass
        finally:
            await engine.dispose()

    baseline = peak_mib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    asyncio.run(read())
    seconds = round(time.perf_counter() - started, 2)
    return {
        "rows": fingerprint.rows,
        "seconds": seconds,
        "baseline_mib": baseline,
        "peak_mib": peak_mib(),
    }


class PhaseTimer(JobStore):
    """A job store that times each phase the training reports, with its own peak memory."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.phases: dict[str, dict[str, float]] = {}
        self.phase, self.since = "reading", time.perf_counter()

    def close_phase(self, next_phase: str) -> None:
        seconds = round(time.perf_counter() - self.since, 2)
        self.phases[self.phase] = {"seconds": seconds, "peak_mib": peak_mib()}
        reset_peak()
        self.phase, self.since = next_phase, time.perf_counter()

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        super().report_progress(job_id, progress)
        if progress["phase"] != self.phase:
            self.close_phase(progress["phase"])


def measure_train() -> dict[str, Any]:
    """Run the worker's training function on a job, timing each phase."""
    from worker.tasks import train_job  # here: the read-only pass's baseline stays without it

    settings = get_settings()
    store = PhaseTimer(redis.Redis.from_url(settings.redis_url, decode_responses=True))
    job_id = store.request_training(enqueue=lambda job_id: None)["job_id"]
    store.start(job_id)
    baseline = peak_mib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    ok = train_job(job_id, settings=settings, store=store)
    store.close_phase("done")
    seconds = round(time.perf_counter() - started, 2)
    job = store.get(job_id) or {}
    if not ok:
        raise SystemExit(f"training failed: {job.get('error')}")
    files = (settings.model_root / job["model_version"]).iterdir()
    model_mib = round(sum(path.stat().st_size for path in files) / 2**20, 1)
    timings = {"seconds": seconds, "baseline_mib": baseline, "phases": store.phases}
    return {**timings, "metrics": job["metrics"], "model_mib": model_mib}


def load_rows(database_url: str, rows: int, corpus: list[tuple[str, str]]) -> float:
    """Replace the table's contents with `rows` sampled rows (COPY); return the seconds taken."""
    started, now = time.perf_counter(), datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        conn.execute("TRUNCATE data RESTART IDENTITY")
        copy_sql = "COPY data (text, label, created_at, updated_at) FROM STDIN"
        with conn.cursor().copy(copy_sql) as copy:
            for text, label in sample_rows(corpus, rows, seed=rows):
                copy.write_row((text, label, now, now))
    return round(time.perf_counter() - started, 1)


def run_child(mode: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one measurement in a fresh process, whose peak memory is its own."""
    argv = [sys.executable, "-m", "loadtests.train_bench", "--child", mode]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {mode} measurement failed:\n{done.stderr[-5000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bench(sizes: list[int], chunk_rows: int, scratch: Path) -> None:
    """Start scratch PostgreSQL and Redis, then measure and print each size."""
    corpus = load_debian_corpus()
    pg_port, redis_port, password = free_port(), free_port(), new_password()
    pg_log, redis_log = scratch / "postgres.log", scratch / "redis.log"
    children = [
        start_postgres(
            scratch / "postgres",
            port=pg_port,
            database="bench",
            password=password,
            log_path=pg_log,
        ),
        start_redis(scratch / "redis", port=redis_port, password=password, log_path=redis_log),
    ]
    database_url = postgres_url(port=pg_port, database="bench", password=password)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url(port=redis_port, password=password),
        "MODEL_DIR": str(scratch / "models"),
        "READ_CHUNK_ROWS": str(chunk_rows),
    }
    try:
        run_web_command(env, "migrate", "--no-input", "-v", "0")  # the data table, the registry
        for rows in sizes:
            loaded = load_rows(database_url, rows, corpus)
            result = {"rows": rows, "load_seconds": loaded, "read_only": run_child("read", env)}
            print(json.dumps({**result, "train": run_child("train", env)}), flush=True)
    finally:
        stop_children(children)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--child", choices=["read", "train"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_read() if args.child == "read" else measure_train()))
        return 0
    scratch = make_scratch_dir("textclf-train-bench-")
    try:
        bench([int(size) for size in args.sizes.split(",")], args.chunk_rows, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
