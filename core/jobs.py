"""Training jobs and the training lock, kept in Redis.

A train request is never lost: while a job is queued and not started, a request returns that job
(its training has not read the rows yet, so it will see every row committed before the request);
otherwise the request creates a new queued job. A marker key names the one queued job; setting it
with NX makes concurrent requests agree on one job, and `start` deletes it atomically with the
switch to running, before the training reads anything. At most one training runs at a time per
model name: it holds that name's lock, renewed while it runs, so a killed worker's lock expires
soon after. Each name has its own marker and lock (`default`'s keep the keys they had before
names existed), so names train side by side, up to the worker count.

The job store is the algorithm service's contract with the worker: the service creates jobs
and answers their state, the worker runs them. Who asked for a job and the id of the request that
created it are kept with the job (not in the API's job shape) for the registry's run row; a request
that joins a queued job leaves them as they were. Plain redis-py and pydantic, nothing else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel

from core.model_names import DEFAULT_MODEL

PREFIX = "textclf:"
QUEUED_MARKER = f"{PREFIX}queued-job"
TRAINING_LOCK = f"{PREFIX}training-lock"
DEFAULT_JOB_TTL = 7 * 24 * 3600
# The Celery task the worker registers and the algorithm service sends by name, and the message
# header the request id travels in (not an argument of the task).
TRAIN_TASK = "textclf.train"
REQUEST_ID_TASK_HEADER = "request_id"


class Job(BaseModel):
    """A training job as the API answers it; the store keeps exactly these fields."""

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: dict[str, Any] | None
    model_version: str | None
    metrics: dict[str, Any] | None
    error: str | None
    promoted: bool | None = None  # set on success: did the gate make it the champion?
    model: str = DEFAULT_MODEL  # the model name it trains


JOB_FIELDS = tuple(Job.model_fields)


class Requester(BaseModel):
    """Who asked for a job (e.g. "token:ci") and the request id that created it."""

    requested_by: str | None = None
    request_id: str | None = None


REQUESTER_FIELDS = tuple(Requester.model_fields)

# How web tells the algorithm service who asked for a training: the requester's name (e.g.
# "token:ci"), percent-encoded UTF-8, 1 to REQUESTED_BY_MAX_CHARS visible ASCII characters. web
# encodes to fit (whole characters only), the service refuses anything else. The limit is
# training_run.requested_by's length; decoding only shortens the name.
REQUESTED_BY_HEADER = "X-Requested-By"
REQUESTED_BY_MAX_CHARS = 200

# How many times a worker started the job (a hash field outside the API's job shape). A start
# that never finished means the worker died: a late-acknowledged task is delivered again.
STARTS_FIELD = "starts"

# Every hash field holds JSON, so Lua writes JSON-encoded strings too (an integer is its JSON).
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '"succeeded"' or status == '"failed"' then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'status', '"running"', 'started_at', ARGV[2],
           'progress', ARGV[3], 'finished_at', 'null', 'error', 'null')
local starts = redis.call('HINCRBY', KEYS[1], ARGV[5], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return starts
"""
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXPIRE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC, e.g. 2026-11-23T16:15:00.123456Z."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def queued_marker(model: str = DEFAULT_MODEL) -> str:
    """The key naming `model`'s one queued job."""
    return QUEUED_MARKER if model == DEFAULT_MODEL else f"{QUEUED_MARKER}:{model}"


def training_lock(model: str = DEFAULT_MODEL) -> str:
    """The key of `model`'s training lock."""
    return TRAINING_LOCK if model == DEFAULT_MODEL else f"{TRAINING_LOCK}:{model}"


class JobStore:
    """Creates, updates and reads training jobs; holds the training lock."""

    def __init__(self, client: redis.Redis, *, job_ttl_seconds: int = DEFAULT_JOB_TTL) -> None:
        self.client = client
        self.job_ttl_seconds = job_ttl_seconds
        self._start = client.register_script(_START)
        self._delete_if_equal = client.register_script(_DELETE_IF_EQUAL)
        self._expire_if_equal = client.register_script(_EXPIRE_IF_EQUAL)

    def request_training(
        self,
        *,
        enqueue: Callable[[str], None],
        requester: Requester | None = None,
        model: str = DEFAULT_MODEL,
    ) -> dict[str, Any]:
        """Return the queued, not yet started job, or create one and enqueue(job_id) it.

        A new job keeps `requester`; a joined job keeps the one it was created with. Each model
        name has its own queued job.
        """
        marker = queued_marker(model)
        while True:
            job_id = secrets.token_hex(16)
            job: dict[str, Any] = dict.fromkeys(JOB_FIELDS)
            job.update(
                job_id=job_id,
                status="queued",
                created_at=utc_now(),
                progress={"phase": "queued"},
                model=model,
            )
            self._write(job_id, {**job, **(requester or Requester()).model_dump()})
            if self.client.set(marker, job_id, nx=True, ex=self.job_ttl_seconds):
                break
            self.client.delete(job_key(job_id))  # another request's job is queued: use it
            queued_id: str | None = self.client.get(marker)  # type: ignore[assignment]
            queued = self.get(queued_id) if queued_id else None
            if queued is not None:
                return queued
            if queued_id:  # the marker outlived its job: drop it
                self._delete_if_equal(keys=[marker], args=[queued_id])
            # Otherwise the marker vanished (its job just started): try again.
        try:
            enqueue(job_id)
        except BaseException as exc:
            self._delete_if_equal(keys=[marker], args=[job_id])
            self.fail(job_id, f"could not queue the training: {exc}")
            raise
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the job, or None if it is unknown or expired."""
        raw = self.client.hgetall(job_key(job_id))
        if not raw:
            return None
        job = {field: json.loads(raw[field]) if field in raw else None for field in JOB_FIELDS}
        job["model"] = job["model"] or DEFAULT_MODEL  # a job stored before names existed
        return job

    def model_of(self, job_id: str) -> str:
        """The model name the job trains (`default` for a job stored before names existed)."""
        raw = self.client.hget(job_key(job_id), "model")
        return json.loads(raw) if raw else DEFAULT_MODEL

    def requester(self, job_id: str) -> Requester:
        """Who asked for the job and from which request (empty if unknown)."""
        raw = self.client.hmget(job_key(job_id), REQUESTER_FIELDS)
        found = {
            name: json.loads(value)
            for name, value in zip(REQUESTER_FIELDS, raw, strict=True)
            if value is not None
        }
        return Requester.model_validate(found)

    def start(self, job_id: str, model: str = DEFAULT_MODEL) -> int:
        """Mark the job running and stop handing it to new requests; 0 if unknown or done.

        Returns how many times the job has been started, this time included: above 1, the
        workers of the earlier starts died (the count lives in Redis, so it outlives them).
        """
        starts = self._start(
            keys=[job_key(job_id), queued_marker(model)],
            args=[
                job_id,
                json.dumps(utc_now()),
                json.dumps({"phase": "starting"}),
                self.job_ttl_seconds,
                STARTS_FIELD,
            ],
        )
        return int(starts)

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """Record how far the running job has got."""
        self._write(job_id, {"progress": progress})

    def succeed(
        self,
        job_id: str,
        *,
        model_version: str,
        metrics: dict[str, Any],
        promoted: bool | None = None,
    ) -> None:
        """Mark the job succeeded with the model version it published (and whether it serves)."""
        self._write(
            job_id,
            {
                "status": "succeeded",
                "finished_at": utc_now(),
                "progress": {"phase": "done"},
                "model_version": model_version,
                "metrics": metrics,
                "error": None,
                "promoted": promoted,
            },
        )

    def fail(self, job_id: str, error: str) -> None:
        """Mark the job failed with an error a person can act on."""
        self._write(job_id, {"status": "failed", "finished_at": utc_now(), "error": error})

    def acquire_training_lock(
        self, job_id: str, ttl_seconds: int, model: str = DEFAULT_MODEL
    ) -> bool:
        """Take `model`'s training lock for job_id unless another training of it holds it."""
        return bool(self.client.set(training_lock(model), job_id, nx=True, ex=ttl_seconds))

    def renew_training_lock(
        self, job_id: str, ttl_seconds: int, model: str = DEFAULT_MODEL
    ) -> bool:
        """Extend the lock job_id holds; False if it no longer holds it."""
        return bool(self._expire_if_equal(keys=[training_lock(model)], args=[job_id, ttl_seconds]))

    def release_training_lock(self, job_id: str, model: str = DEFAULT_MODEL) -> None:
        """Release the lock if job_id still holds it."""
        self._delete_if_equal(keys=[training_lock(model)], args=[job_id])

    def _write(self, job_id: str, fields: dict[str, Any]) -> None:
        key = job_key(job_id)
        with self.client.pipeline() as pipe:  # MULTI/EXEC: all fields or none
            pipe.hset(key, mapping={name: json.dumps(value) for name, value in fields.items()})
            pipe.expire(key, self.job_ttl_seconds)
            pipe.execute()
