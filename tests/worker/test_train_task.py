"""Training through a real Celery worker: jobs, published versions, failures, one at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from algorithm.ml.artifacts import load_current_version
from tests.helpers import WorkerStarter, signing_keys, wait_until

pytestmark = pytest.mark.slow
Insert = Callable[[list[tuple[str, str]]], None]
Job = dict[str, Any]


def manifest_of(model_dir: Path, version: str) -> dict[str, Any]:
    return dict(json.loads((model_dir / version / "manifest.json").read_text()))


def test_a_training_job_publishes_a_complete_current_version(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    job_store: Any,
    model_dir: Path,
) -> None:
    insert_rows(fixture_corpus)
    start_worker()
    job = request_training()
    assert job["status"] == "queued"
    seen = {job["status"]}

    def finished() -> Job | None:
        current: Job = job_store.get(job["job_id"])
        seen.add(current["status"])
        return current if current["status"] in ("succeeded", "failed") else None

    current = wait_until(finished, timeout=60, interval=0.01, what="the job finished")
    assert current["status"] == "succeeded", current["error"]
    assert "running" in seen
    assert current["created_at"] <= current["started_at"] <= current["finished_at"]
    version = current["model_version"]
    assert os.readlink(model_dir / "current") == version
    assert {p.name for p in (model_dir / version).iterdir()} == {
        "model.pickle",
        "vectorizer.pickle",
        "manifest.json",
    }
    manifest = manifest_of(model_dir, version)
    assert manifest["rows"] == len(fixture_corpus) == manifest["fingerprint"]["rows"]
    assert sorted(manifest["labels"]) == sorted({label for _, label in fixture_corpus})
    assert current["metrics"] == manifest["metrics"] and current["metrics"]["accuracy"] > 0.5
    # The algorithm service's loader accepts what the worker published.
    assert load_current_version(model_dir, signing_keys=signing_keys()).version == version


def test_no_rows_fails_with_an_actionable_error(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    model_dir: Path,
) -> None:
    start_worker()
    job = wait_for_job(request_training()["job_id"])
    assert job["status"] == "failed"
    assert "no training data" in job["error"] and "POST /api/data/" in job["error"]
    assert job["model_version"] is None
    assert list(model_dir.iterdir()) == []


def test_a_soft_time_limit_while_rows_are_read_fails_the_job_and_its_run(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    test_database_url: str,
    model_dir: Path,
) -> None:
    """The limit's signal arrives while the job's event loop waits on PostgreSQL, not in the fit:
    the job still fails with the error that says what to do, well before the hard limit."""
    insert_rows(fixture_corpus)
    start_worker(
        TASK_SOFT_TIME_LIMIT="3",
        TASK_TIME_LIMIT="60",
        BROKER_VISIBILITY_TIMEOUT="70",
        TRAINING_LOCK_TTL="10",
    )
    with psycopg.connect(test_database_url) as blocker:
        blocker.execute("LOCK TABLE data IN ACCESS EXCLUSIVE MODE")  # reading rows now waits
        job = wait_for_job(request_training()["job_id"], timeout=30)
    assert job["status"] == "failed"
    assert "took longer than 3 s" in job["error"] and "TASK_SOFT_TIME_LIMIT" in job["error"]
    with psycopg.connect(test_database_url) as conn:
        run = conn.execute(
            "SELECT status, error FROM training_run WHERE id = %s", (job["job_id"],)
        ).fetchone()
    assert run is not None and run[0] == "failed" and "took longer than 3 s" in run[1]
    assert list(model_dir.iterdir()) == []


def test_a_training_killed_at_the_hard_time_limit_fails_its_job_instead_of_running_for_ever(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    test_database_url: str,
    model_dir: Path,
) -> None:
    """PostgreSQL holds the training up past both limits: the registry's run table is locked, so
    not even the soft limit's failure can be written. Celery kills the process at the hard limit
    and acknowledges the task (no redelivery); the job must say what happened."""
    insert_rows(fixture_corpus)
    worker = start_worker(
        TASK_SOFT_TIME_LIMIT="1",
        TASK_TIME_LIMIT="2",
        BROKER_VISIBILITY_TIMEOUT="4",
        TRAINING_LOCK_TTL="3",
    )
    with psycopg.connect(test_database_url) as blocker:
        blocker.execute("LOCK TABLE training_run IN ACCESS EXCLUSIVE MODE")
        job_id = request_training()["job_id"]
        # The lock stays until Celery has killed the process, however late the task started.
        wait_until(lambda: "Hard time limit" in worker.log(), timeout=30, what="the hard kill")
        blocker.rollback()  # the main process's write of the failure goes through now
    # Without a failure written by the worker's main process, the job would say "running" for
    # ever. Celery calls the main process's hook before it kills the process, so the training's
    # own soft-limit failure, held up by the same lock, may land last: either names the limits.
    job = wait_for_job(job_id, timeout=30)
    assert job["status"] == "failed"
    assert "TASK_TIME_LIMIT" in job["error"], job["error"]
    assert list(model_dir.iterdir()) == []


def test_one_label_fails_and_the_previous_model_stays_current(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    model_dir: Path,
) -> None:
    from django.db import connection

    insert_rows(fixture_corpus)
    start_worker()
    first = wait_for_job(request_training()["job_id"])
    assert first["status"] == "succeeded", first["error"]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE data SET label = 'games'")
    failed = wait_for_job(request_training()["job_id"])
    assert failed["status"] == "failed"
    assert "at least two labels" in failed["error"] and "games" in failed["error"]
    assert os.readlink(model_dir / "current") == first["model_version"]
    visible = {p.name for p in model_dir.iterdir() if not p.name.startswith(".")}
    assert visible == {"current", first["model_version"]}


def test_more_labels_than_max_labels_fail_while_reading_and_say_how_many(
    start_worker: Callable[..., Any],
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    test_database_url: str,
    model_dir: Path,
) -> None:
    insert_rows(fixture_corpus)  # 6 labels, read in 9 chunks: the limit is crossed early on
    start_worker(MAX_LABELS="2", READ_CHUNK_ROWS="100")
    job = wait_for_job(request_training()["job_id"])
    assert job["status"] == "failed"
    assert "6 distinct labels" in job["error"] and "limit of 2 (MAX_LABELS)" in job["error"]
    assert job["progress"] == {"phase": "reading", "rows_read": len(fixture_corpus)}  # no fit
    assert list(model_dir.iterdir()) == []
    with psycopg.connect(test_database_url) as conn:
        run = conn.execute(
            "SELECT status, error FROM training_run WHERE id = %s", (job["job_id"],)
        ).fetchone()
    assert run == ("failed", job["error"])


def test_requests_during_training_run_one_at_a_time_and_include_every_row(
    start_worker: WorkerStarter,
    insert_rows: Insert,
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    job_store: Any,
    model_dir: Path,
) -> None:
    # Two workers: the second would gladly train the second job while the first one runs.
    # Started side by side (seconds of imports each), both ready before the first request.
    workers = [start_worker.launch(), start_worker.launch()]
    for worker in workers:
        worker.wait_ready()
    committed = 0
    requests: list[tuple[int, str]] = []  # rows committed before the request, job returned

    def add_rows_and_request(rows: list[tuple[str, str]]) -> str:
        nonlocal committed
        insert_rows(rows)
        committed += len(rows)
        job_id = request_training()["job_id"]
        requests.append((committed, job_id))
        return job_id

    # 3 600 rows: seconds of training, and the next two requests follow within milliseconds of
    # its start (three times as many rows only made each of the three trainings longer).
    big = [(f"{text} copy {i}", label) for i in range(4) for text, label in fixture_corpus]
    first = add_rows_and_request(big)
    wait_until(
        lambda: job_store.get(first)["status"] != "queued",
        timeout=30,
        interval=0.01,
        what="the first job started",
    )
    second = add_rows_and_request(fixture_corpus[:50])
    third = add_rows_and_request(fixture_corpus[50:60])
    assert second != first  # the first job was running: a new job
    jobs = {job_id: wait_for_job(job_id) for job_id in {first, second, third}}
    for rows_before, job_id in requests:
        job = jobs[job_id]
        assert job["status"] == "succeeded", job["error"]
        assert manifest_of(model_dir, job["model_version"])["rows"] >= rows_before
    intervals = sorted((job["started_at"], job["finished_at"]) for job in jobs.values())
    for (_, finished), (started, _) in zip(intervals, intervals[1:], strict=False):
        assert finished <= started, f"two trainings overlapped: {intervals}"
