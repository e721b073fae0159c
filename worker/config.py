"""The worker's settings: environment only, read once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import NonNegativeFloat, PositiveInt, model_validator

from algorithm.ml.training import DEFAULT_MAX_LABELS
from core.settings import JobSettings, ModelSigning, ModelStoreSettings, RegistryPolicy


class WorkerSettings(RegistryPolicy, JobSettings, ModelSigning, ModelStoreSettings):
    """Limits of the training task and of the broker that delivers it.

    The registry's rules (PROMOTION_TOLERANCE, MODEL_RETENTION), JOB_TTL_SECONDS and
    MODEL_SIGNING_KEY and the model store are shared (core/settings.py).
    """

    worker_concurrency: PositiveInt = 1
    task_soft_time_limit: PositiveInt = 3300  # seconds: the job fails with a clear error
    task_time_limit: PositiveInt = 3600  # seconds: the process is killed
    # An unacknowledged task is redelivered after this long; it must exceed the time limit or a
    # still-running training would be delivered a second time.
    broker_visibility_timeout: PositiveInt = 4000
    # The training lock is renewed while a training runs; a killed worker's lock expires after
    # this long, so a redelivered job waits at most this long before it can start.
    training_lock_ttl: PositiveInt = 60
    # How often a worker looks for tasks whose worker died (unacknowledged past the timeout).
    broker_restore_interval: PositiveInt = 10
    read_chunk_rows: PositiveInt = 5000
    # Distinct labels a training accepts (algorithm/ml/training.py says why 1 000); beyond it the
    # job fails while the rows are read, before anything is fitted.
    max_labels: PositiveInt = DEFAULT_MAX_LABELS
    # A job whose worker died this many times (killed, out of memory) fails on its next delivery
    # instead of being trained again, and again.
    training_max_worker_deaths: PositiveInt = 3
    # Every statement of a training job's connections ends within this many milliseconds (a
    # chunk of rows, a registry write); far above what one takes, below a stuck lock's forever.
    worker_statement_timeout_ms: PositiveInt = 300_000
    # The worker's own GET /metrics (its main process; 0 turns it off). See worker/observability.py.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 8002
    # The promotion gate (algorithm/ml/promotion.py): gate | auto | manual.
    promotion_policy: Literal["gate", "auto", "manual"] = "gate"
    # Held-out rows the champion never saw: below this many, the gate compares recorded scores;
    # at most this many are kept in memory to score the champion on.
    gate_min_rows: PositiveInt = 50
    gate_max_rows: PositiveInt = 10_000
    # After a promotion the job waits this long for every live replica to serve the new version.
    served_wait_seconds: NonNegativeFloat = 5.0

    @model_validator(mode="after")
    def _check_limits(self) -> WorkerSettings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("TASK_SOFT_TIME_LIMIT must be below TASK_TIME_LIMIT")
        if self.broker_visibility_timeout <= self.task_time_limit:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT, or a running training "
                "would be redelivered to another worker"
            )
        if self.training_lock_ttl >= self.broker_visibility_timeout:
            raise ValueError("TRAINING_LOCK_TTL must be below BROKER_VISIBILITY_TIMEOUT")
        return self


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    """The process-wide settings object."""
    return WorkerSettings()
