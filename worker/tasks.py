"""The training task: read the rows, train, publish, gate, record the job's outcome.

The order of steps is what keeps the promises of the job store (core/jobs.py): take the
training lock, mark the job started (new requests now get a new job), and only then open the
snapshot the rows are read from. A failed training publishes nothing, so the previous model keeps
serving. A job delivered again because its worker died is counted (JobStore.start): if its run
committed already, it ends as that success; after TRAINING_MAX_WORKER_DEATHS deaths it fails
instead of training again (worker/job_outcomes.py).

A job trains one model name (the task's `model`, else the job's own): that name's lock, that
name's rows, that name's champion for the gate. Two names train side by side when the worker runs
two or more processes (WORKER_CONCURRENCY); one name trains one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.ext.asyncio import AsyncEngine

from algorithm.ml.training import TrainingDataError, too_many_labels, train_model
from core.jobs import TRAIN_TASK, JobStore, Requester
from core.logs import REQUEST_ID
from core.model_names import DEFAULT_MODEL, InvalidModelName, check_model_name
from worker import registry_sql
from worker.celery_app import celery_app
from worker.config import WorkerSettings, get_settings
from worker.job_outcomes import (
    fail_job,
    finish_committed_run,
    hard_time_limit_error,
    time_limit_error,
    unexpected_error,
    worker_deaths_error,
)
from worker.observability import record_training_rows, training_phase
from worker.publishing import Outcome, SharedRowsCollector, publish_and_promote
from worker.rows import DataFingerprint, database_engine, stream_training_rows

logger = logging.getLogger(__name__)
LOCK_RETRY_SECONDS = 2


@lru_cache(maxsize=1)
def get_job_store() -> JobStore:
    """The process's job store (redis-py reconnects by itself after a fork)."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return JobStore(client, job_ttl_seconds=settings.job_ttl_seconds)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The process's Redis client for the registry-to-serving protocol."""
    return redis.Redis.from_url(get_settings().redis_url, decode_responses=True)


@dataclass
class TrainingRows:
    texts: list[str]
    labels: list[str]
    ids: array[int]
    fingerprint: DataFingerprint


async def read_training_rows(
    engine: AsyncEngine,
    *,
    chunk_rows: int,
    max_labels: int,
    store: JobStore,
    job_id: str,
    model: str = DEFAULT_MODEL,
) -> TrainingRows:
    """Stream every row of `model` into memory, reporting progress after each chunk.

    More than `max_labels` distinct labels is a TrainingDataError that says how many: from the
    chunk that crosses the limit on, the rows are dropped and only their labels are counted.
    """
    texts: list[str] = []
    labels: list[str] = []
    ids = array("q")  # 8 bytes a row: the gate needs to know which rows are new
    distinct: set[str] = set()
    rows_read = 0
    fingerprint = DataFingerprint()
    chunks = stream_training_rows(
        engine, chunk_rows=chunk_rows, fingerprint=fingerprint, model=model
    )
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            rows_read += len(chunk)
            distinct.update(label for _, _, label in chunk)
            if len(distinct) > max_labels:
                texts.clear()  # this training will not fit: keep nothing but the labels
                labels.clear()
                del ids[:]
            else:
                for row_id, body, label in chunk:
                    ids.append(row_id)
                    texts.append(body)
                    labels.append(label)
            store.report_progress(job_id, {"phase": "reading", "rows_read": rows_read})
    if len(distinct) > max_labels:
        raise too_many_labels(len(distinct), max_labels)
    return TrainingRows(texts=texts, labels=labels, ids=ids, fingerprint=fingerprint)


@contextlib.contextmanager
def renewed_lock(
    store: JobStore, job_id: str, ttl_seconds: int, model: str = DEFAULT_MODEL
) -> Iterator[None]:
    """Keep renewing `model`'s training lock from a thread while the block runs; release it
    after."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_seconds / 3):
            try:
                if not store.renew_training_lock(job_id, ttl_seconds, model):
                    logger.error("job %s lost the training lock", job_id)
                    return
            except redis.RedisError:
                logger.warning("could not renew the training lock of job %s", job_id)

    thread = threading.Thread(target=renew, name="training-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.release_training_lock(job_id, model)


async def run_training(
    job_id: str,
    *,
    settings: WorkerSettings,
    engine: AsyncEngine,
    store: JobStore,
    request_id: str | None = None,
    model: str = DEFAULT_MODEL,
) -> Outcome:
    """Train `model` on its rows, publish and let the gate decide for a started job (raises on
    failure)."""
    champion = await registry_sql.read_champion(engine, model)
    with training_phase("read"):
        rows = await read_training_rows(
            engine,
            chunk_rows=settings.read_chunk_rows,
            max_labels=settings.max_labels,
            store=store,
            job_id=job_id,
            model=model,
        )
    count = len(rows.texts)
    record_training_rows(count)
    store.report_progress(job_id, {"phase": "training", "rows": count})
    shared = SharedRowsCollector(champion, max_rows=settings.gate_max_rows)
    with training_phase("fit"):
        # On the loop's own thread: a soft time limit interrupts the fit itself.
        trained, metrics = train_model(
            rows.texts,
            rows.labels,
            max_labels=settings.max_labels,
            on_holdout=shared.collect(rows.texts, rows.labels, rows.ids),
        )
    rows.texts.clear()  # the fitted model no longer needs the rows: free them before pickling
    rows.labels.clear()
    store.report_progress(job_id, {"phase": "publishing", "rows": count})
    with training_phase("publish"):
        return await publish_and_promote(
            settings,
            engine,
            run_id=job_id,
            model=trained,
            metrics=metrics,
            fingerprint=rows.fingerprint.as_dict(),
            rows=count,
            champion=champion,
            shared=shared.rows,
            redis_client=get_redis(),
            request_id=request_id,
            model_name=model,
        )


def requester_of(job_id: str, *, store: JobStore) -> Requester:
    """Who asked for the job, and the request id: the job's own, else the task's header."""
    requester = store.requester(job_id)
    if requester.request_id is None:  # a job created without one
        requester = requester.model_copy(update={"request_id": REQUEST_ID.get()})
    return requester


def train_job(
    job_id: str,
    *,
    settings: WorkerSettings,
    store: JobStore,
    starts: int = 1,
    model: str | None = None,
) -> bool:
    """Run the started job to its end, recording success or failure; False if it failed.

    `starts` counts this start too (JobStore.start); `model` is the name it trains (None: the
    job's own). One event loop and one database engine for the whole job.
    """
    if model is None:
        model = store.model_of(job_id)
    try:
        return asyncio.run(
            _train_job(job_id, starts=starts, settings=settings, store=store, model=model)
        )
    except SoftTimeLimitExceeded:
        # The soft limit's signal arrived while the loop waited on I/O (reading rows, the
        # registry): it never reaches the job's coroutine, asyncio.run cancels that and re-raises
        # it here. The job is failed on a loop of its own.
        asyncio.run(_fail_after_time_limit(job_id, settings=settings, store=store))
        return False


async def _train_job(
    job_id: str, *, starts: int, settings: WorkerSettings, store: JobStore, model: str
) -> bool:
    engine = database_engine(settings.database_url)
    try:
        return await _run_job(
            job_id, starts=starts, settings=settings, engine=engine, store=store, model=model
        )
    finally:
        await engine.dispose()


async def _fail_after_time_limit(job_id: str, *, settings: WorkerSettings, store: JobStore) -> None:
    engine = database_engine(settings.database_url)
    try:
        await fail_job(job_id, time_limit_error(settings), engine=engine, store=store)
    finally:
        await engine.dispose()


async def record_run(
    job_id: str, *, engine: AsyncEngine, store: JobStore, model: str = DEFAULT_MODEL
) -> Requester:
    """Record the job's run of `model` as running (again, for a redelivered job); who asked."""
    job = store.get(job_id)
    created_at = datetime.fromisoformat(job["created_at"]) if job else datetime.now(UTC)
    requester = requester_of(job_id, store=store)
    await registry_sql.record_run_started(
        engine,
        run_id=job_id,
        created_at=created_at,
        requested_by=requester.requested_by,
        request_id=requester.request_id,
        model=model,
    )
    return requester


async def _run_job(
    job_id: str,
    *,
    starts: int,
    settings: WorkerSettings,
    engine: AsyncEngine,
    store: JobStore,
    model: str,
) -> bool:
    try:
        if starts > 1 and await finish_committed_run(
            job_id, settings=settings, engine=engine, store=store, redis_client=get_redis()
        ):
            return True
        requester = await record_run(job_id, engine=engine, store=store, model=model)
        deaths = starts - 1  # every earlier start of a job that is not finished died
        if deaths >= settings.training_max_worker_deaths:
            await fail_job(
                job_id, worker_deaths_error(deaths, settings), engine=engine, store=store
            )
            return False
        outcome = await run_training(
            job_id,
            settings=settings,
            engine=engine,
            store=store,
            request_id=requester.request_id,
            model=model,
        )
    except TrainingDataError as exc:
        await fail_job(job_id, str(exc), engine=engine, store=store)
        return False
    except SoftTimeLimitExceeded:  # raised in the fit, which runs on the loop's thread
        await fail_job(job_id, time_limit_error(settings), engine=engine, store=store)
        return False
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        await fail_job(job_id, unexpected_error(exc, settings), engine=engine, store=store)
        return False
    manifest = outcome.manifest
    store.succeed(
        job_id,
        model_version=manifest["version"],
        metrics=manifest["metrics"],
        promoted=outcome.promoted,
    )
    return True


# max_retries=None on the task: `retry(max_retries=None)` would mean "the default, 3".
# A registry write from the worker's main process waits this long at most: it must not hold up
# the worker's other tasks when PostgreSQL is what held the killed training up.
HARD_LIMIT_STATEMENT_TIMEOUT_MS = 5_000


class TrainTask(Task):
    """The training task's class: a job whose process the hard time limit killed fails too."""

    def on_failure(
        self, exc: Exception, task_id: str, args: tuple, kwargs: dict, einfo: object
    ) -> None:
        # Celery calls it in the worker's main process after killing the process at
        # TASK_TIME_LIMIT, and acknowledges the message: no redelivery, so without this the job
        # would say "running" until its record expired.
        if isinstance(exc, TimeLimitExceeded):
            job_id = args[0] if args else kwargs.get("job_id")
            if isinstance(job_id, str):
                fail_after_hard_time_limit(job_id, settings=get_settings(), store=get_job_store())


def fail_after_hard_time_limit(job_id: str, *, settings: WorkerSettings, store: JobStore) -> None:
    job = store.get(job_id)
    if job is None or job["status"] != "running":
        return
    error = hard_time_limit_error(settings)
    logger.error("job %s: %s", job_id, error)

    async def fail() -> None:
        engine = database_engine(
            settings.database_url, statement_timeout_ms=HARD_LIMIT_STATEMENT_TIMEOUT_MS
        )
        try:
            await fail_job(job_id, error, engine=engine, store=store)
        finally:
            await engine.dispose()

    asyncio.run(fail())


@celery_app.task(name=TRAIN_TASK, bind=True, max_retries=None, base=TrainTask)
def train(self: Task, job_id: str, model: str | None = None) -> str | None:
    """Train `model` (None: the job's own name) for job_id unless another training of that name
    runs (then retry) or the job is done already."""
    settings = get_settings()
    store = get_job_store()
    if model is None:
        model = store.model_of(job_id)
    try:
        check_model_name(model)
    except InvalidModelName as exc:
        return refuse_job(job_id, f"cannot train model {model!r}: {exc}", store=store)
    if not store.acquire_training_lock(job_id, settings.training_lock_ttl, model):
        # Another training of this name runs: this job stays queued, so requests still join it.
        raise self.retry(countdown=LOCK_RETRY_SECONDS)
    with renewed_lock(store, job_id, settings.training_lock_ttl, model):
        starts = store.start(job_id, model)
        if not starts:
            logger.info("job %s is unknown or finished already; skipping", job_id)
            return None
        logger.info("training job %s of model %s (start %d)", job_id, model, starts)
        train_job(job_id, starts=starts, settings=settings, store=store, model=model)
    job = store.get(job_id)
    return job["status"] if job else None


def refuse_job(job_id: str, error: str, *, store: JobStore) -> str | None:
    """Fail a job that cannot be trained at all (its task names no valid model), unless done.

    Started first: that takes it out of its name's queue, so the next request gets a new job.
    """
    logger.error("job %s: %s", job_id, error)
    if store.start(job_id, store.model_of(job_id)):
        store.fail(job_id, error)
    job = store.get(job_id)
    return job["status"] if job else None
