"""Training jobs in the real Redis: a train request is never lost, never duplicated."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from core.jobs import DEFAULT_JOB_TTL, QUEUED_MARKER, Job, JobStore, Requester, job_key


@pytest.fixture
def store(redis_db_url: str) -> Iterator[JobStore]:
    client = redis.Redis.from_url(redis_db_url, decode_responses=True)
    yield JobStore(client)
    client.close()


class Recorder:
    """An enqueue function that remembers what it was given."""

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, job_id: str) -> None:
        with self.lock:
            self.job_ids.append(job_id)


def test_a_request_while_a_job_is_queued_returns_that_job(store: JobStore) -> None:
    enqueue = Recorder()
    first = store.request_training(enqueue=enqueue)
    second = store.request_training(enqueue=enqueue)
    assert second["job_id"] == first["job_id"]
    assert first["status"] == "queued"
    assert first["created_at"].endswith("Z")
    assert first["started_at"] is None and first["finished_at"] is None
    assert enqueue.job_ids == [first["job_id"]]
    assert store.get(first["job_id"]) == first
    assert Job.model_validate(first).model_dump() == first  # every field of the API's job shape


def test_concurrent_requests_create_exactly_one_queued_job(store: JobStore) -> None:
    enqueue = Recorder()
    barrier = threading.Barrier(16)
    returned: list[str] = []

    def request() -> None:
        barrier.wait()
        returned.append(store.request_training(enqueue=enqueue)["job_id"])

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(enqueue.job_ids) == 1
    assert set(returned) == set(enqueue.job_ids)
    # Orphans of the losing requests are gone: only the one job exists.
    assert len(store.client.keys("textclf:job:*")) == 1


def test_a_joined_job_keeps_its_first_requester_and_the_next_job_its_own(
    store: JobStore,
) -> None:
    enqueue = Recorder()
    ci = Requester(requested_by="token:ci", request_id="req-ci")
    first = store.request_training(enqueue=enqueue, requester=ci)
    joined = store.request_training(
        enqueue=enqueue, requester=Requester(requested_by="token:bob", request_id="req-bob")
    )
    assert joined["job_id"] == first["job_id"]
    assert store.requester(first["job_id"]) == ci
    assert set(first) == set(Job.model_fields)  # not part of the job the API answers
    assert store.get(first["job_id"]) == first

    store.start(first["job_id"])
    anonymous = store.request_training(enqueue=enqueue)
    assert store.requester(anonymous["job_id"]) == Requester()
    assert store.requester("no-such-job") == Requester()


def test_a_request_after_the_job_started_gets_a_new_job(store: JobStore) -> None:
    enqueue = Recorder()
    first = store.request_training(enqueue=enqueue)
    assert store.start(first["job_id"])
    running = store.get(first["job_id"])
    assert running is not None and running["status"] == "running"
    assert running["started_at"] is not None
    second = store.request_training(enqueue=enqueue)
    assert second["job_id"] != first["job_id"]
    assert enqueue.job_ids == [first["job_id"], second["job_id"]]


def test_a_finished_or_unknown_job_does_not_start_again(store: JobStore) -> None:
    job = store.request_training(enqueue=Recorder())
    assert store.start(job["job_id"])
    store.succeed(job["job_id"], model_version="v1", metrics={"accuracy": 0.9})
    assert not store.start(job["job_id"])  # a duplicate delivery is skipped
    assert not store.start("no-such-job")
    done = store.get(job["job_id"])
    assert done is not None
    assert (done["status"], done["model_version"], done["metrics"]) == (
        "succeeded",
        "v1",
        {"accuracy": 0.9},
    )
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]


def test_an_enqueue_failure_fails_the_job_and_lets_the_next_request_retry(
    store: JobStore,
) -> None:
    def broken(job_id: str) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        store.request_training(enqueue=broken)
    assert store.client.get(QUEUED_MARKER) is None
    (key,) = store.client.keys("textclf:job:*")
    failed = store.get(str(key).rsplit(":", 1)[1])
    assert failed is not None and failed["status"] == "failed"
    assert "broker unreachable" in failed["error"]
    enqueue = Recorder()
    retried = store.request_training(enqueue=enqueue)
    assert retried["status"] == "queued" and enqueue.job_ids == [retried["job_id"]]


def test_a_marker_whose_job_expired_does_not_block_requests(store: JobStore) -> None:
    store.client.set(QUEUED_MARKER, "expired-job")
    enqueue = Recorder()
    job = store.request_training(enqueue=enqueue)
    assert enqueue.job_ids == [job["job_id"]]


def test_the_training_lock_admits_one_holder(store: JobStore) -> None:
    assert store.acquire_training_lock("a", 30)
    assert not store.acquire_training_lock("b", 30)
    assert not store.renew_training_lock("b", 30)
    store.release_training_lock("b")  # not the holder: no effect
    assert not store.acquire_training_lock("b", 30)
    assert store.renew_training_lock("a", 30)
    store.release_training_lock("a")
    assert store.acquire_training_lock("b", 30)


def test_progress_is_visible_while_running(store: JobStore) -> None:
    job = store.request_training(enqueue=Recorder())
    store.start(job["job_id"])
    store.report_progress(job["job_id"], {"phase": "reading", "rows_read": 12000})
    current = store.get(job["job_id"])
    assert current is not None
    assert current["progress"] == {"phase": "reading", "rows_read": 12000}
    store.fail(job["job_id"], "no training data")
    failed = store.get(job["job_id"])
    assert failed is not None and (failed["status"], failed["error"]) == (
        "failed",
        "no training data",
    )


def test_the_algorithm_service_keeps_queued_jobs_for_job_ttl_seconds(
    serve_app: Callable[[Any], httpx.Client],
    redis_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JOB_TTL_SECONDS reaches the jobs POST /train queues, as it reaches the worker's.

    The service as its factory builds it (its own job store and training queue) on this test's
    Redis database; `serve_app`'s client sends the service token.
    """
    monkeypatch.setenv("JOB_TTL_SECONDS", "120")
    settings = AlgorithmSettings(redis_url=redis_db_url, model_dir=tmp_path)
    client = serve_app(create_asgi_app(settings))

    answer = client.post("/train")

    assert answer.status_code == 202, answer.text
    with redis.Redis.from_url(redis_db_url, decode_responses=True) as redis_client:
        job_ttl = redis_client.ttl(job_key(answer.json()["job_id"]))
        marker_ttl = redis_client.ttl(QUEUED_MARKER)
        queued_tasks = redis_client.llen("celery")
    assert 110 <= job_ttl <= 120 and 110 <= marker_ttl <= 120, (job_ttl, marker_ttl)
    assert DEFAULT_JOB_TTL > 120  # the default (7 days) would have shown above
    assert queued_tasks == 1  # and the real queue has the training task
