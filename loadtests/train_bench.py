"""Training time and peak memory per phase, at several row counts, on realistic rows.

Loads N rows sampled from Debian's package descriptions (loadtests.corpus) into a scratch embedded
PostgreSQL with COPY, then, each in a fresh process so peak memory is its own: a read-only pass
(stream every row and fingerprint it, keep nothing) and the worker's training function itself
(worker.tasks.train_job: read, train, publish; no broker). Peak RSS is VmHWM, reset per phase.

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
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS data (
    id bigserial PRIMARY KEY, text text NOT NULL, label varchar(100) NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
)
"""


def memory_kib(field: str) -> int:
    """Return a VmRSS/VmHWM-style field of /proc/self/status in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure_read() -> dict[str, Any]:
    """Stream every row and fingerprint it, keeping nothing (run in a fresh process)."""
    from worker.config import get_settings
    from worker.rows import DataFingerprint, stream_training_rows

    settings = get_settings()

    async def read() -> DataFingerprint:
        fingerprint = DataFingerprint()
        async for _ in stream_training_rows(
            settings.database_url, chunk_rows=settings.read_chunk_rows, fingerprint=fingerprint
        ):
            pass
        return fingerprint

    baseline = memory_kib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    fingerprint = asyncio.run(read())
    return {
        "rows": fingerprint.rows,
        "seconds": round(time.perf_counter() - started, 2),
        "baseline_mib": round(baseline / 1024),
        "peak_mib": round(memory_kib("VmHWM") / 1024),
    }


def measure_train() -> dict[str, Any]:
    """Run the worker's training function on a job, timing each phase (fresh process)."""
    import redis

    from algorithm.jobs import JobStore
    from worker.config import get_settings
    from worker.tasks import train_job

    settings = get_settings()
    phases: dict[str, dict[str, float]] = {}
    current_phase, since = "reading", time.perf_counter()

    def close_phase(next_phase: str) -> None:
        nonlocal current_phase, since
        phases[current_phase] = {
            "seconds": round(time.perf_counter() - since, 2),
            "peak_mib": round(memory_kib("VmHWM") / 1024),
        }
        reset_peak()
        current_phase, since = next_phase, time.perf_counter()

    class PhaseTimingStore(JobStore):
        def report_progress(self, job_id: str, progress: dict[str, Any]) -> None:
            super().report_progress(job_id, progress)
            if progress["phase"] != current_phase:
                close_phase(progress["phase"])

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    store = PhaseTimingStore(client)
    job = store.request_training(enqueue=lambda job_id: None)
    store.start(job["job_id"])
    baseline = memory_kib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    ok = train_job(job["job_id"], settings=settings, store=store)
    close_phase("done")
    total = round(time.perf_counter() - started, 2)
    finished = store.get(job["job_id"]) or {}
    client.close()
    if not ok:
        raise SystemExit(f"training failed: {finished.get('error')}")
    version_dir = settings.model_root / str(finished["model_version"])
    return {
        "seconds": total,
        "baseline_mib": round(baseline / 1024),
        "phases": phases,
        "metrics": finished["metrics"],
        "model_mib": round(sum(p.stat().st_size for p in version_dir.iterdir()) / 2**20, 1),
    }


def load_rows(database_url: str, rows: int, corpus: list[tuple[str, str]]) -> float:
    """Replace the table's contents with `rows` sampled rows (COPY); return the seconds taken."""
    import psycopg

    from loadtests.corpus import sample_rows

    started = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        conn.execute(CREATE_TABLE)
        conn.execute("TRUNCATE data RESTART IDENTITY")
        with conn.cursor().copy(
            "COPY data (text, label, created_at, updated_at) FROM STDIN"
        ) as copy:
            for text, label in sample_rows(corpus, rows, seed=rows):
                copy.write_row((text, label, now, now))
    return round(time.perf_counter() - started, 1)


def run_child(mode: str, env: dict[str, str]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "loadtests.train_bench", "--child", mode],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def bench(sizes: list[int], chunk_rows: int, scratch: Path) -> list[dict[str, Any]]:
    """Start scratch PostgreSQL and Redis, then measure each size; return one result per size."""
    from loadtests.corpus import load_debian_corpus
    from stack.embedded import free_port, start_postgres, start_redis
    from stack.process import stop_children

    corpus = load_debian_corpus()
    pg_port, redis_port = free_port(), free_port()
    children = [
        start_postgres(scratch / "postgres", port=pg_port, database="bench",
                       log_path=scratch / "postgres.log"),
        start_redis(scratch / "redis", port=redis_port, log_path=scratch / "redis.log"),
    ]  # fmt: skip
    database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/bench"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MODEL_DIR": str(scratch / "models"),
        "READ_CHUNK_ROWS": str(chunk_rows),
    }
    results = []
    try:
        for rows in sizes:
            result: dict[str, Any] = {
                "rows": rows,
                "load_seconds": load_rows(database_url, rows, corpus),
            }
            result["read_only"] = run_child("read", env)
            result["train"] = run_child("train", env)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        stop_children(children)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--child", choices=["read", "train"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = measure_read() if args.child == "read" else measure_train()
        print(json.dumps(result))
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="textclf-train-bench-"))
    try:
        bench([int(size) for size in args.sizes.split(",")], args.chunk_rows, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
