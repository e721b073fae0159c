"""Retention never removes a version the registry can still serve or restore."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from algorithm.ml.artifacts import prune_versions, publish_model_version
from tests.algorithm.registry_helpers import fit_quickly
from tests.helpers import signing_keys
from worker import registry_sql
from worker.rows import database_engine


def test_pruning_spares_live_versions_and_removes_soft_deleted_ones_marking_them(
    transactional_db: Any,
    test_database_url: str,
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    make_version: Callable[..., Any],
) -> None:
    from web.registry.models import ModelVersion

    model = fit_quickly(fixture_corpus, slice(200))  # only its files matter here
    published = [
        publish_model_version(
            model_dir,
            model,
            metrics={},
            fingerprint={},
            rows=200,
            retention=None,
            make_current=False,
            signing_keys=signing_keys(),
        )["version"]
        for _ in range(4)
    ]
    live, deleted, unknown, newest = published
    make_version(version=live)
    make_version(version=deleted, deleted_at="2026-11-20T00:00Z")
    make_version(version=newest)

    def spare(candidates: list[str]) -> set[str]:
        async def ask() -> set[str]:
            engine = database_engine(test_database_url)
            try:
                return await registry_sql.versions_to_spare(engine, candidates)
            finally:
                await engine.dispose()

        return asyncio.run(ask())

    removed = prune_versions(model_dir, retention=1, spare=spare)
    assert sorted(removed) == sorted([deleted, unknown])  # never recorded: an orphan
    assert {p.name for p in model_dir.iterdir()} == {live, newest}
    gone = ModelVersion.objects.get(version=deleted)
    assert gone.files_removed_at is not None  # restore now refuses it with a clear 409
    assert ModelVersion.objects.get(version=live).files_removed_at is None
