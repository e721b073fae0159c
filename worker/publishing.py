"""After training: publish the files, let the gate decide, record it all, tell the replicas.

The version's files are published without touching `current`, its manifest signed with
MODEL_SIGNING_KEY (algorithm/ml/signing.py), and, with an object store (MODEL_STORE_URL),
uploaded whole before anything names it; the gate
(algorithm/ml/promotion.py) judges it against the champion; one SQL transaction
(worker/registry_sql.py) writes the version, the run's outcome and, if promoted, the aliases with
their audit rows (the shared use case `core.registry.promote`). Only after that commit
does `current` switch and the desired state go out to the serving processes, and the job waits
(bounded) until every live replica serves the new version, so "succeeded" means "served".

Per model name: only `default` has a `current` link (the volume's layout from before names); any
other name is served from its desired state alone, announced under its own key, and the job waits
for the replicas that hold that name. Retention counts each name's versions on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from algorithm.ml.artifacts import (
    VERSION_PATTERN,
    load_version_dir,
    prune_versions,
    publish_model_version,
    switch_current,
)
from algorithm.ml.promotion import Champion, SharedRows, decide_promotion
from algorithm.ml.signing import SigningKeys
from algorithm.ml.store import ArtifactStore, open_store
from algorithm.ml.training import TrainedModel
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import announce, wait_until_served
from worker import registry_sql
from worker.config import WorkerSettings

logger = logging.getLogger(__name__)
# Versions deleted from the object store per pruning at most (one per training): a backlog left
# by an unreachable store is worked off over the next trainings, not all in one.
STORE_DELETIONS_PER_PRUNING = 100


@dataclass(frozen=True)
class Outcome:
    manifest: dict[str, Any]
    promoted: bool


class SharedRowsCollector:
    """Keeps the held-out rows the champion never saw (ids above its data's highest id)."""

    def __init__(self, champion: Champion | None, *, max_rows: int) -> None:
        max_id = champion.fingerprint.get("max_id") if champion else None
        self.max_seen = max_id if isinstance(max_id, int) else None
        self.max_rows = max_rows
        self.rows = SharedRows()

    def collect(
        self, texts: Sequence[str], labels: Sequence[str], ids: array[int]
    ) -> Any:  # the callback train_model calls with the held-out indices and predictions
        def keep(indices: Sequence[int], predicted: list[str]) -> None:
            if self.max_seen is None:
                return
            for index, guess in zip(indices, predicted, strict=True):
                if ids[index] > self.max_seen and len(self.rows.texts) < self.max_rows:
                    self.rows.texts.append(texts[index])
                    self.rows.labels.append(labels[index])
                    self.rows.candidate_predictions.append(guess)

        return keep


def model_store(settings: WorkerSettings) -> ArtifactStore:
    """The store versions are uploaded to (the model volume itself unless MODEL_STORE_URL)."""
    return open_store(
        settings.model_store_url,
        model_root=settings.model_root,
        cache_dir=settings.model_cache_dir,
        cache_max_bytes=settings.model_cache_max_bytes,
        region=settings.aws_region,
    )


def load_version(
    store: ArtifactStore, model_root: Any, version: str, *, signing_keys: SigningKeys
) -> TrainedModel:
    """Load a named version, signature and sha256 checked: this worker's own copy under the
    model root when it has one, else the store's (downloaded into the cache)."""
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"not a version name: {version!r}")
    local = model_root / version
    if not local.is_dir():
        local = store.version_dir(version, signing_keys=signing_keys)
    return load_version_dir(local, signing_keys=signing_keys).model


def upload(store: ArtifactStore, version_dir: Any) -> None:
    """Upload a published version to the store; a version that cannot be uploaded is removed
    from the model root too (nothing will ever name it)."""
    try:
        store.publish(version_dir)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise


async def publish_and_promote(
    settings: WorkerSettings,
    engine: AsyncEngine,
    *,
    run_id: str,
    model: TrainedModel,
    metrics: dict[str, Any],
    fingerprint: dict[str, Any],
    rows: int,
    champion: Champion | None,
    shared: SharedRows,
    redis_client: redis.Redis,
    request_id: str | None = None,
    model_name: str = DEFAULT_MODEL,
) -> Outcome:
    """Publish `model_name`'s new version, judge it against that name's champion, record it in
    one transaction, then switch and announce if promoted."""
    root = settings.model_root
    signing_keys = SigningKeys.from_secrets(settings.model_signing_key)
    store = model_store(settings)
    manifest = publish_model_version(
        root,
        model,
        signing_keys=signing_keys,
        metrics=metrics,
        fingerprint=fingerprint,
        rows=rows,
        retention=None,
        make_current=False,
    )
    version = manifest["version"]
    await asyncio.to_thread(upload, store, root / version)

    def load_champion() -> TrainedModel:
        assert champion is not None  # the gate loads it only when there is one
        return load_version(store, root, champion.version, signing_keys=signing_keys)

    report = decide_promotion(
        policy=settings.promotion_policy,
        tolerance=settings.promotion_tolerance,
        candidate_version=version,
        candidate_metrics=metrics,
        champion=champion,
        shared=shared,
        load_champion=load_champion,
        min_rows=settings.gate_min_rows,
    )
    logger.info("gate for %s: %s", version, report["decision"])
    promoted = await registry_sql.record_version(
        engine,
        run_id=run_id,
        manifest=manifest,
        report=report,
        judged_champion=champion.version if champion else None,
        request_id=request_id,
        model=model_name,
    )
    die_here_if_a_test_asks()
    if promoted:
        await serve_committed_version(
            settings, engine, version=version, redis_client=redis_client, model=model_name
        )
    await prune(settings, engine, store)
    return Outcome(manifest={**manifest, "gate": report}, promoted=promoted)


# Tests only (tests/worker/test_worker_deaths.py): set to 1, the training process SIGKILLs
# itself right after the registry committed its version, as a machine dying there would.
KILL_AFTER_COMMIT_ENV = "TEXTCLF_TEST_KILL_AFTER_COMMIT"


def die_here_if_a_test_asks() -> None:
    if os.environ.get(KILL_AFTER_COMMIT_ENV) == "1":
        os.kill(os.getpid(), signal.SIGKILL)


async def serve_committed_version(
    settings: WorkerSettings,
    engine: AsyncEngine,
    *,
    version: str,
    redis_client: redis.Redis,
    model: str = DEFAULT_MODEL,
) -> None:
    """After the commit: point `current` at the champion (`default` only), announce what the
    registry wants of `model` and wait (bounded) until every replica holding it serves `version`
    if it is still the champion.

    Never raises for the link or Redis: the registry already serves the version, so the job
    succeeds; the worker's link follower retries the link, and whoever reconciles Redis with
    the registry announces it.
    """
    desired = await registry_sql.read_desired(engine, model)
    if desired.champion == version and model == DEFAULT_MODEL:
        try:
            switch_current(settings.model_root, version)
        except OSError:
            logger.exception("could not point `current` at %s; the link follower retries", version)
    try:
        announce(redis_client, desired)
        if desired.champion != version:
            return
        served = await asyncio.to_thread(
            wait_until_served, redis_client, version, settings.served_wait_seconds, model
        )
    except redis.RedisError:
        logger.exception("could not announce %s; it is announced once Redis answers", version)
        return
    if not served:
        logger.warning(
            "not every replica serves %s after %s s; the job succeeds anyway",
            version,
            settings.served_wait_seconds,
        )


async def prune(
    settings: WorkerSettings, engine: AsyncEngine, store: ArtifactStore | None = None
) -> None:
    """Remove version files beyond retention, sparing every version the registry can restore;
    from the object store too, when versions live in one."""
    loop = asyncio.get_running_loop()
    retention = settings.model_retention

    async def to_spare(candidates: list[str]) -> set[str]:
        # The volume's candidates are beyond its newest versions of all names together; those
        # among their own name's newest stay without asking anything more.
        recent = await registry_sql.recent_versions(engine, candidates, retention)
        rest = [version for version in candidates if version not in recent]
        spared = await registry_sql.versions_to_spare(engine, rest, retention=retention)
        return recent | spared

    def spare(candidates: list[str]) -> set[str]:  # asked from the pruning thread
        return asyncio.run_coroutine_threadsafe(to_spare(candidates), loop).result()

    # The store first: the registry marks what goes, and the volume then follows that mark. A
    # store that fails (restarting, unreachable) holds back no pruning of the volume.
    if store is not None and not store.follows_current_link:
        try:
            await prune_store(settings, engine, store)
        except Exception:
            logger.exception("pruning the object store failed; the next pruning retries")
    try:
        await asyncio.to_thread(
            prune_versions, settings.model_root, retention=settings.model_retention, spare=spare
        )
    except Exception:
        logger.exception("pruning old versions failed; they stay stored until the next run")


async def prune_store(settings: WorkerSettings, engine: AsyncEngine, store: ArtifactStore) -> None:
    """Delete from the object store the versions beyond their own name's retention that the
    registry cannot restore. Asked of the registry, not of this host's volume: any worker host
    may have published them, and the store is never listed.

    The registry marks a version's files removed before they are deleted (restore refuses it
    from then on), and records each deletion that succeeded: a version whose deletion failed
    (the store unreachable) is deleted again at the next pruning, up to
    STORE_DELETIONS_PER_PRUNING versions each time.
    """
    retention = settings.model_retention
    candidates = await registry_sql.versions_beyond_retention(engine, retention)
    if candidates:  # marks those that may go
        await registry_sql.versions_to_spare(engine, candidates, retention=retention)
    doomed = await registry_sql.versions_left_in_store(engine, STORE_DELETIONS_PER_PRUNING)
    deleted: list[str] = []
    try:
        for version in doomed:
            await asyncio.to_thread(store.delete, [version])
            deleted.append(version)
    finally:
        if deleted:
            await registry_sql.record_deleted_from_store(engine, deleted)
            logger.info("deleted %d versions beyond retention from the store", len(deleted))
