"""A job whose worker keeps dying fails instead of looping; one killed right after its commit
succeeds and is served, without training again. Real workers, killed with SIGKILL."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from algorithm.ml.artifacts import VERSION_PATTERN
from tests.helpers import WorkerStarter, wait_until
from worker.publishing import KILL_AFTER_COMMIT_ENV

pytestmark = pytest.mark.slow
Job = dict[str, Any]
# A killed training's lock expires after this long; then its redelivery may start.
LOCK_TTL = "1"


def versions_in(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if VERSION_PATTERN.match(p.name))


def run_row(database_url: str, job_id: str) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT r.status, r.error, r.version_id, a.version_id FROM training_run r "
            "LEFT JOIN model_alias a ON a.name = 'champion' WHERE r.id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None, f"no run recorded for job {job_id}"
    return tuple(row)


def test_a_job_whose_worker_died_the_limit_times_fails_and_says_so(
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    job_store: Any,
    test_database_url: str,
    model_dir: Path,
) -> None:
    insert_rows(fixture_corpus)  # seconds of training: the kill lands in the middle of it
    worker = start_worker(TRAINING_MAX_WORKER_DEATHS="1", TRAINING_LOCK_TTL=LOCK_TTL)
    job_id = request_training()["job_id"]
    wait_until(
        lambda: job_store.get(job_id)["status"] == "running",
        interval=0.01,
        what=f"job {job_id} running",
    )
    (pool_pid,) = worker.pool_pids()
    os.kill(pool_pid, signal.SIGKILL)

    job = wait_for_job(job_id, timeout=60)

    assert job["status"] == "failed"
    assert "died 1 time" in job["error"] and "TRAINING_MAX_WORKER_DEATHS, is 1" in job["error"]
    assert job["model_version"] is None and versions_in(model_dir) == []
    status, error, version, _ = run_row(test_database_url, job_id)
    assert (status, error, version) == ("failed", job["error"], None)
    assert "WorkerLostError" in worker.log()  # it really died, and was delivered again


def test_a_worker_killed_right_after_its_promotion_committed_leaves_a_served_success(
    start_worker: WorkerStarter,
    start_service: Callable[..., str],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    redis_db_url: str,
    test_database_url: str,
    model_dir: Path,
    service_headers: dict[str, str],
) -> None:
    insert_rows(fixture_corpus[::9])  # 100 rows: a short training
    # The training process SIGKILLs itself right after the registry committed (only then).
    worker = start_worker.launch(**{KILL_AFTER_COMMIT_ENV: "1"}, TRAINING_LOCK_TTL=LOCK_TTL)
    # Started beside the worker (seconds of imports each).
    algorithm = start_service("algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir))
    worker.wait_ready()

    job = wait_for_job(request_training()["job_id"], timeout=60)

    assert job["status"] == "succeeded", job["error"]
    assert "WorkerLostError" in worker.log()  # the process that committed died
    assert versions_in(model_dir) == [job["model_version"]]  # not trained a second time
    assert job["promoted"] is True and job["metrics"]["train_rows"] == 100
    assert run_row(test_database_url, job["job_id"]) == (
        "succeeded",
        None,
        job["model_version"],
        job["model_version"],
    )
    # Served at once, as after any success.
    answer = httpx.post(
        f"{algorithm}/predict", json={"text": "a game"}, headers=service_headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == job["model_version"]
    assert os.readlink(model_dir / "current") == job["model_version"]
