"""What one algorithm process owns: the models it serves (model pool: `default`'s cache and
batcher, and named models loaded on demand), registry follower, shadow scorer, job store and queue.

Created by the app factory; the follower and the shadow scorer start and everything closes with
the server's lifespan, on the server's event loop. Nothing here is created lazily by a view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis

from algorithm.ml.signing import SigningKeys
from algorithm.ml.store import open_store
from algorithm.service.batcher import MicroBatcher, Prediction
from algorithm.service.champion_follower import ChampionFollower
from algorithm.service.config import AlgorithmSettings
from algorithm.service.model_cache import ModelCache
from algorithm.service.model_pool import ModelPool
from algorithm.service.observability import record_model_loaded, record_served_version
from algorithm.service.served_model import serve
from algorithm.service.shadow import ShadowScorer
from core import serving_protocol
from core.jobs import JobStore
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import ShadowCounts

log = logging.getLogger(__name__)


class ServingRuntime:
    def __init__(
        self,
        settings: AlgorithmSettings,
        *,
        job_store: JobStore,
        enqueue: Callable[..., None],  # (job_id) or (job_id, model)
        redis_client: redis.Redis,
        on_close: list[Callable[[], None]],
    ) -> None:
        self.settings = settings
        self.job_store = job_store
        self.enqueue = enqueue
        self.redis = redis_client
        self._on_close = on_close  # blocking clean-ups (connections), run off the loop
        shadowing = settings.shadow_fraction > 0
        signing_keys = SigningKeys.from_secrets(settings.model_signing_key)
        store = open_store(
            settings.model_store_url,
            model_root=settings.model_root,
            cache_dir=settings.model_cache_dir,
            cache_max_bytes=settings.model_cache_max_bytes,
            region=settings.aws_region,
        )

        def make_cache(model: str) -> ModelCache:
            return ModelCache(
                settings.model_root,
                signing_keys=signing_keys,
                keep_challenger=shadowing,
                store=store,  # one per host: the object store's bounded cache is shared
                model=model,
            )

        self.models = make_cache(DEFAULT_MODEL)  # `default`: loaded at once, as before names
        # Serve the desired (else the published) model from the first request on.
        self.models.follow(_desired_or_none(redis_client))
        record_served_version(DEFAULT_MODEL, None, self.models.version)  # "none" until served
        if self.models.current is not None:
            record_model_loaded(DEFAULT_MODEL, self.models.memory_bytes)
        self.shadow = (
            ShadowScorer(
                self.models,
                fraction=settings.shadow_fraction,
                queue_size=settings.shadow_queue_size,
            )
            if shadowing
            else None
        )
        default = serve(self.models, settings, pinned=True, shadow=self.shadow)
        self.batcher: MicroBatcher = default.batcher
        self.pool = ModelPool(
            default, settings=settings, redis_client=redis_client, make_cache=make_cache
        )
        self.follower = ChampionFollower(
            self.pool,
            redis_client=redis_client,
            redis_url=settings.redis_url,
            poll_seconds=settings.desired_poll_ms / 1000,
            fallback_poll_seconds=settings.model_poll_ms / 1000,
            shadow_counts=self.shadow.counts if self.shadow else ShadowCounts,
        )
        self._started = False

    async def predict(
        self,
        texts: list[str],
        top_k: int | None = None,
        model: str = DEFAULT_MODEL,
        *,
        alone: bool = False,
    ) -> Prediction:
        """Labels (and `top_k` scores) for `texts` by `model`, loading it first if need be;
        with no `default` model yet, look for one first. `alone`: no other request is being
        answered that could share the batch (see `MicroBatcher.predict`)."""
        served = self.pool.served.get(model)  # the warm path: one dict lookup
        if served is None:
            served = await self.pool.acquire(model)
        elif served.cache.current is None:
            await self.follower.ensure_model(self.settings.model_check_ms / 1000)
        served.last_used = time.monotonic()
        served.users += 1  # before any await: never unloaded while this request uses it
        try:
            prediction = await served.batcher.predict(texts, top_k, alone=alone)
        finally:
            served.users -= 1
        if served.shadow is not None:  # the one comparison shadow scoring costs when it is off
            served.shadow.offer(texts, prediction.labels, prediction.version)
        return prediction

    def enqueue_training(self, job_id: str, model: str) -> None:
        """Send the training task of `job_id` for `model` (`enqueue(job_id)` for `default`, so
        a sender that predates names still works)."""
        if model == DEFAULT_MODEL:
            self.enqueue(job_id)
        else:
            self.enqueue(job_id, model)

    async def start(self) -> None:
        """Start following the registry (and shadow scoring) on the running loop."""
        if not self._started:
            self._started = True
            await self.follower.start()
            if self.shadow is not None:
                await self.shadow.start()
            self.pool.start_pinned()

    async def aclose(self) -> None:
        """Stop following, the shadow scorer and the batcher; close the connections."""
        if self._started:
            self._started = False
            await self.follower.aclose()
            if self.shadow is not None:
                await self.shadow.aclose()
        await self.pool.aclose()
        await self.batcher.close()
        await self.pool.served[DEFAULT_MODEL].challenger_batcher.close()
        for close in self._on_close:
            await asyncio.to_thread(close)


def _desired_or_none(client: redis.Redis) -> serving_protocol.Desired | None:
    """The desired state at startup; None (follow `current`) when Redis cannot say."""
    try:
        return serving_protocol.read_desired(client)
    except (redis.RedisError, OSError) as exc:
        log.warning("cannot read the desired versions at startup, following `current`: %s", exc)
        return None
