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

    def make(
        *, macro_f1: float | None = 0.8, model: str = "default", **fields: Any
    ) -> ModelVersion:
        tick = next(_clock)
        created = START + timedelta(minutes=tick)
        version = fields.pop("version", f"{created:%Y%m%dT%H%M%S%f}Z-{tick:08x}")
        run = TrainingRun.objects.create(
            id=f"job-{version}",
            model=model,
            status="succeeded",
            created_at=created,
            started_at=created,
            finished_at=created,
            rows=100,
            metrics={"macro_f1": macro_f1},
        )
        made = ModelVersion.objects.create(
            version=version,
            model=model,
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
def champion_of() -> Callable[..., str | None]:
    """`champion_of()`: default's champion; `champion_of("sentiment")`: that name's."""
    from web.registry.models import Alias

    def read(model: str = "default") -> str | None:
        row = Alias.objects.filter(model=model, name="champion").first()
        return row.version_id if row else None

    return read


@pytest.fixture
def register_model(db: Any) -> Callable[[str], str]:
    """Record a model name, as the first rows written under it would."""
    from web.registry.models import RegisteredModel

    def register(name: str) -> str:
        RegisteredModel.objects.create(name=name, created_by="token:test")
        return name

    return register
