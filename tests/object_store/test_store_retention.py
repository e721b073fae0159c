"""Retention pruning deletes from the object store what the registry lets go, and only that."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store
from algorithm.ml.store import MISSING_MANIFEST
from algorithm.ml.training import TrainedModel
from tests.helpers import signing_keys
from tests.registry.conftest import make_version  # noqa: F401 (a fixture)
from worker.config import WorkerSettings
from worker.publishing import prune_store
from worker.rows import database_engine


def test_pruning_deletes_beyond_retention_only_what_the_registry_cannot_restore(
    transactional_db: Any,
    make_version: Callable[..., Any],  # noqa: F811
    test_database_url: str,
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Callable[[S3Store, TrainedModel], str],
    quick_models: list[TrainedModel],
) -> None:
    from django.utils import timezone

    from web.registry.models import ModelVersion

    store = open_s3(store_url)
    deleted, kept, newest = (publish_to(store, quick_models[0]) for _ in range(3))
    for version in (deleted, kept, newest):
        make_version(version=version)
    # Soft-deleted, no alias, beyond retention: its files may go. `kept` is beyond retention
    # too, but restorable from the registry's point of view (not deleted): it stays.
    ModelVersion.objects.filter(version=deleted).update(deleted_at=timezone.now())

    async def prune() -> None:
        engine = database_engine(test_database_url, statement_timeout_ms=10_000)
        try:
            settings = WorkerSettings(model_retention=1, model_store_url=store_url)
            await prune_store(settings, engine, store)
        finally:
            await engine.dispose()

    asyncio.run(prune())

    host = open_s3(store_url, host="fresh")
    with pytest.raises(artifacts.ArtifactError) as gone:
        host.version_dir(deleted, signing_keys=signing_keys())
    assert gone.value.reason == MISSING_MANIFEST
    for version in (kept, newest):
        assert host.version_dir(version, signing_keys=signing_keys()).name == version
    assert ModelVersion.objects.get(version=deleted).files_removed_at is not None
