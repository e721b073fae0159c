"""A worker killed in the middle of training loses nothing and publishes nothing partial."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from algorithm.ml.artifacts import VERSION_PATTERN
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
Job = dict[str, Any]
# About 1.7 s of training on a quiet machine (8 000 rows: 3.3 s), a one-split plan search: long
# enough to be killed in the middle, short enough for the limits below.
ROWS = 4_000
# Short limits, so a redelivery happens within the test; same order as the defaults. The soft
# limit stays about three times the training's time on a busy machine: the visibility timeout,
# which the redelivery test waits out, must exceed the hard limit.
LIMITS = {
    "TASK_SOFT_TIME_LIMIT": "7",
    "TASK_TIME_LIMIT": "8",
    "BROKER_VISIBILITY_TIMEOUT": "9",
    "TRAINING_LOCK_TTL": "3",
    "BROKER_RESTORE_INTERVAL": "1",
}


def distinct_rows(corpus: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """count distinct rows: each fixture text followed by another one."""
    n = len(corpus)
    return [
        (f"{corpus[i % n][0]} {corpus[(i % n + 1 + i // n) % n][0]}", corpus[i % n][1])
        for i in range(count)
    ]


class ModelDirWatcher:
    """Checks, every few milliseconds, what a reader of the model root could see."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.violations: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for entry in list(self.model_dir.iterdir()):
                if VERSION_PATTERN.match(entry.name) and not (entry / "manifest.json").exists():
                    self.violations.append(f"version dir without manifest: {entry.name}")
            link = self.model_dir / "current"
            if os.path.lexists(link) and not (link / "manifest.json").exists():
                self.violations.append(f"current points to {os.readlink(link)!r}, incomplete")
            self.checks += 1

    def __enter__(self) -> ModelDirWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def training_job(
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    job_store: Any,
    start_worker: Callable[..., Any],
) -> Iterator[tuple[Any, str]]:
    """A worker in the middle of training a job on ROWS rows: (worker, job_id)."""
    insert_rows(distinct_rows(fixture_corpus, ROWS))
    worker = start_worker(**LIMITS)
    job_id = request_training()["job_id"]
    wait_until(
        lambda: (job_store.get(job_id)["progress"] or {}).get("phase") == "training",
        timeout=60,
        interval=0.02,
        what=f"job {job_id} training",
    )
    yield worker, job_id


def assert_trained_on_every_row(job: Job, model_dir: Path) -> None:
    assert job["status"] == "succeeded", job["error"]
    assert os.readlink(model_dir / "current") == job["model_version"]
    versions = [p.name for p in model_dir.iterdir() if VERSION_PATTERN.match(p.name)]
    assert versions == [job["model_version"]]  # the killed run published nothing
    assert job["metrics"]["train_rows"] == ROWS


def test_killing_the_whole_worker_redelivers_the_job_to_a_new_worker(
    training_job: tuple[Any, str],
    start_worker: Callable[..., Any],
    wait_for_job: Callable[..., Job],
    job_store: Any,
    model_dir: Path,
) -> None:
    worker, job_id = training_job
    with ModelDirWatcher(model_dir) as watcher:
        worker.kill()
        assert job_store.get(job_id)["status"] == "running"
        start_worker(**LIMITS)
        # Redelivered once the visibility timeout has passed since the first delivery.
        job = wait_for_job(job_id, timeout=120)
    assert watcher.violations == [] and watcher.checks > 100
    assert_trained_on_every_row(job, model_dir)


def test_killing_the_training_process_retries_the_job_in_the_same_worker(
    training_job: tuple[Any, str],
    wait_for_job: Callable[..., Job],
    model_dir: Path,
) -> None:
    worker, job_id = training_job
    with ModelDirWatcher(model_dir) as watcher:
        (pool_pid,) = worker.pool_pids()
        os.kill(pool_pid, signal.SIGKILL)
        job = wait_for_job(job_id, timeout=90)
    assert watcher.violations == [] and watcher.checks > 100
    assert_trained_on_every_row(job, model_dir)
    assert "WorkerLostError" in worker.log()  # the job really was interrupted
