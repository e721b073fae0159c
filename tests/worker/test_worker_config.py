"""The worker refuses limits under which a running training would be delivered twice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.celery_app import make_celery
from worker.config import WorkerSettings


def test_defaults_keep_redelivery_after_the_time_limit() -> None:
    settings = WorkerSettings()
    assert settings.task_soft_time_limit < settings.task_time_limit
    assert settings.training_lock_ttl < settings.broker_visibility_timeout
    assert settings.task_time_limit < settings.broker_visibility_timeout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task_time_limit": 3600, "broker_visibility_timeout": 3600}, "BROKER_VISIBILITY_TIMEOUT"),
        ({"task_soft_time_limit": 3600, "task_time_limit": 3600}, "TASK_SOFT_TIME_LIMIT"),
    ],
)
def test_unsafe_limits_are_refused(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkerSettings(**overrides)  # type: ignore[arg-type]


def test_the_celery_app_acknowledges_late_and_takes_one_task_at_a_time() -> None:
    settings = WorkerSettings(
        task_time_limit=20, task_soft_time_limit=15, broker_visibility_timeout=25,
        training_lock_ttl=5,
    )  # fmt: skip
    app = make_celery(settings)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (15, 20)
    assert conf.broker_transport_options["visibility_timeout"] == 25
    app.close()
