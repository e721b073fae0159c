"""Registry fixtures: versions made straight in the database (the admin `api` client is shared)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from web.registry.models import ModelVersion

_clock = itertools.count()
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def make_version(db: Any) -> Callable[..., ModelVersion]:
    """Record a version (and its run) as the worker would; newer with every call."""
    from web.registry.models import ModelVersion, TrainingRun

    def make(*, macro_f1: float | None = 0.8, **fields: Any) -> ModelVersion:
        tick = next(_clock)
        created = START + timedelta(minutes=tick)
        version = fields.pop("version", f"{created:%Y%m%dT%H%M%S%f}Z-{tick:08x}")
        run = TrainingRun.objects.create(
            id=f"job-{version}",
            status="succeeded",
            created_at=created,
            started_at=created,
            finished_at=created,
            rows=100,
            metrics={"macro_f1": macro_f1},
        )
        made = ModelVersion.objects.create(
            version=version,
            run=run,
            created_at=created,
            rows=100,
            labels=["a", "b"],
            metrics={
                "accuracy": macro_f1,
                "macro_f1": macro_f1,
                "per_label": {"a": {"f1": macro_f1}},
            },
            fingerprint={"rows": 100, "max_id": 100, "sha256": "0" * 64},
            sha256={"model.pickle": "1" * 64},
            library_versions={"python": "3.11"},
            **fields,
        )
        run.version = made
        run.save()
        return made

    return make


@pytest.fixture
def champion_of() -> Callable[[], str | None]:
    from web.registry.models import Alias

    def read() -> str | None:
        row = Alias.objects.filter(model="default", name="champion").first()
        return row.version_id if row else None

    return read
