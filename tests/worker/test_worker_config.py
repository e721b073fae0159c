"""The worker refuses limits under which a running training would be delivered twice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.config import WorkerSettings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task_time_limit": 3600, "broker_visibility_timeout": 3600}, "BROKER_VISIBILITY_TIMEOUT"),
        ({"task_soft_time_limit": 3600, "task_time_limit": 3600}, "TASK_SOFT_TIME_LIMIT"),
        ({"training_lock_ttl": 4000, "broker_visibility_timeout": 4000}, "TRAINING_LOCK_TTL"),
    ],
)
def test_unsafe_limits_are_refused(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkerSettings(**overrides)  # type: ignore[arg-type]
