"""Retention pruning deletes from the object store what the registry lets go, and only that."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store
from algorithm.ml.store import MISSING_MANIFEST
from algorithm.ml.training import TrainedModel
from tests.helpers import signing_keys
from tests.registry.conftest import make_version  # noqa: F401 (a fixture)
from worker import publishing
from worker.config import WorkerSettings
from worker.publishing import prune_store
from worker.rows import database_engine


@pytest.fixture
def stored_versions(
    transactional_db: Any,
    make_version: Callable[..., Any],  # noqa: F811
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Callable[[S3Store, TrainedModel], str],
    quick_models: list[TrainedModel],
) -> Callable[[int], list[str]]:
    """`count` versions in the store and the registry, oldest first; the oldest soft-deleted
    (no alias), so beyond retention its files may go."""
    from django.utils import timezone

    from web.registry.models import ModelVersion

    def store_versions(count: int) -> list[str]:
        versions = [publish_to(open_s3(store_url), quick_models[0]) for _ in range(count)]
        for version in versions:
            make_version(version=version)
        ModelVersion.objects.filter(version=versions[0]).update(deleted_at=timezone.now())
        return versions

    return store_versions


def test_pruning_deletes_beyond_retention_only_what_the_registry_cannot_restore(
    stored_versions: Callable[[int], list[str]],
    test_database_url: str,
    open_s3: Callable[..., S3Store],
    store_url: str,
) -> None:
    from web.registry.models import ModelVersion

    # `kept` is beyond retention too, but restorable from the registry's point of view (not
    # deleted): it stays.
    deleted, kept, newest = stored_versions(3)

    prune(open_s3(store_url), test_database_url, store_url)

    host = open_s3(store_url, host="fresh")
    with pytest.raises(artifacts.ArtifactError) as gone:
        host.version_dir(deleted, signing_keys=signing_keys())
    assert gone.value.reason == MISSING_MANIFEST
    for version in (kept, newest):
        assert host.version_dir(version, signing_keys=signing_keys()).name == version
    assert ModelVersion.objects.get(version=deleted).files_removed_at is not None
    assert ModelVersion.objects.get(version=deleted).store_files_deleted_at is not None


def test_a_deletion_the_store_refused_is_done_at_the_next_pruning(
    stored_versions: Callable[[int], list[str]],
    test_database_url: str,
    open_s3: Callable[..., S3Store],
    store_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from web.registry.models import ModelVersion

    worker_models = tmp_path / "worker-models"  # where `publish_to` published them first
    doomed, newest = stored_versions(2)
    refusing = open_s3(f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/models", host="refused")
    with pytest.raises(artifacts.ArtifactError):
        prune(refusing, test_database_url, store_url)
    row = ModelVersion.objects.get(version=doomed)
    assert row.files_removed_at is not None  # restore refuses it already
    assert row.store_files_deleted_at is None
    still_there = open_s3(store_url, host="before")
    assert still_there.version_dir(doomed, signing_keys=signing_keys()).name == doomed
    # The worker's whole pruning: the store refuses again, and the volume is pruned all the same.
    assert sorted(path.name for path in worker_models.iterdir()) == [doomed, newest]
    prune_worker(refusing, test_database_url, store_url, model_dir=worker_models)
    assert [path.name for path in worker_models.iterdir()] == [newest]
    assert "pruning the object store failed" in caplog.text
    assert ModelVersion.objects.get(version=doomed).store_files_deleted_at is None

    prune(open_s3(store_url), test_database_url, store_url)  # nothing new to mark: a retry

    with pytest.raises(artifacts.ArtifactError) as gone:
        open_s3(store_url, host="after").version_dir(doomed, signing_keys=signing_keys())
    assert gone.value.reason == MISSING_MANIFEST
    assert ModelVersion.objects.get(version=doomed).store_files_deleted_at is not None
    fresh = open_s3(store_url, host="fresh")
    assert fresh.version_dir(newest, signing_keys=signing_keys()).name == newest


def prune(store: S3Store, database_url: str, store_url: str) -> None:
    """One pruning of the object store by a worker keeping one version of each name."""
    settings = WorkerSettings(model_retention=1, model_store_url=store_url)
    asyncio.run(_with_engine(database_url, lambda engine: prune_store(settings, engine, store)))


def prune_worker(store: S3Store, database_url: str, store_url: str, *, model_dir: Path) -> None:
    """The worker's whole pruning after a training (the store, then its volume `model_dir`),
    keeping one version of each name; it logs what fails and raises nothing."""
    settings = WorkerSettings(model_retention=1, model_store_url=store_url, model_dir=model_dir)
    asyncio.run(
        _with_engine(database_url, lambda engine: publishing.prune(settings, engine, store))
    )


async def _with_engine(database_url: str, use: Callable[[Any], Awaitable[None]]) -> None:
    engine = database_engine(database_url, statement_timeout_ms=10_000)
    try:
        await use(engine)
    finally:
        await engine.dispose()
