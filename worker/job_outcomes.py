"""How a training job ends: the errors a person can act on, and the job's end in both stores.

A failure is recorded in the registry first, then in the job store, so whoever sees the job
failed finds its run failed too; a run that committed its version is never relabelled failed
(worker/registry_sql.py). A job delivered again after its worker died past that commit ends as
the success it was: announced (for the model name its version was recorded under), waited on
until served, never trained a second time.
"""

from __future__ import annotations

import errno
import logging

import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from core.jobs import JobStore
from worker import registry_sql
from worker.config import WorkerSettings
from worker.publishing import serve_committed_version

logger = logging.getLogger(__name__)
MAX_ERROR_CHARS = 500
STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)


def time_limit_error(settings: WorkerSettings) -> str:
    return (
        f"training took longer than {settings.task_soft_time_limit} s and was stopped; "
        "raise TASK_SOFT_TIME_LIMIT (and TASK_TIME_LIMIT) or train on fewer rows"
    )


def hard_time_limit_error(settings: WorkerSettings) -> str:
    return (
        f"training took longer than {settings.task_time_limit} s and its process was killed "
        f"(TASK_TIME_LIMIT): it did not stop at TASK_SOFT_TIME_LIMIT "
        f"({settings.task_soft_time_limit} s), most likely waiting on the database; nothing was "
        "published. Raise both limits or train on fewer rows"
    )


def worker_deaths_error(deaths: int, settings: WorkerSettings) -> str:
    times = "time" if deaths == 1 else "times"
    return (
        f"the worker training this job died {deaths} {times} (the limit, "
        f"TRAINING_MAX_WORKER_DEATHS, is {settings.training_max_worker_deaths}); not training "
        "it again. Most likely it ran out of memory: train on fewer rows or labels, or give "
        "the worker more memory"
    )


def unexpected_error(exc: Exception, settings: WorkerSettings) -> str:
    """The job error for an exception no step expected (a full model volume says so)."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_FULL:
        return (
            f"no space left on the model volume ({settings.model_root}) while publishing the "
            f"new version ({exc.strerror}); nothing was published and the previous model keeps "
            "serving: free space there (a lower MODEL_RETENTION keeps fewer old versions) and "
            "train again"
        )
    return f"training failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


async def fail_job(job_id: str, error: str, *, engine: AsyncEngine, store: JobStore) -> None:
    """Record the failure in the registry, then in the job store."""
    try:
        await registry_sql.record_run_failed(engine, run_id=job_id, error=error)
    except Exception:
        logger.exception("could not record the failure of run %s in the registry", job_id)
    store.fail(job_id, error)


async def finish_committed_run(
    job_id: str,
    *,
    settings: WorkerSettings,
    engine: AsyncEngine,
    store: JobStore,
    redis_client: redis.Redis,
) -> bool:
    """Succeed a redelivered job whose run already committed its version; False if it did not."""
    committed = await registry_sql.read_committed_run(engine, job_id)
    if committed is None:
        return False
    logger.info(
        "job %s committed %s before its worker died; finishing it", job_id, committed.version
    )
    if committed.promoted:
        await serve_committed_version(
            settings,
            engine,
            version=committed.version,
            redis_client=redis_client,
            model=committed.model,
        )
    store.succeed(
        job_id,
        model_version=committed.version,
        metrics=committed.metrics,
        promoted=committed.promoted,
    )
    return True
