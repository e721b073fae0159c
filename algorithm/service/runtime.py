"""What one algorithm process owns: model cache, batcher, registry follower, shadow scorer,
job store and queue.

Created by the app factory; the follower and the shadow scorer start and everything closes with
the server's lifespan, on the server's event loop. Nothing here is created lazily by a view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis

from algorithm.ml.signing import SigningKeys
from algorithm.ml.store import open_store
from algorithm.service.batcher import MicroBatcher, Prediction
from algorithm.service.champion_follower import ChampionFollower
from algorithm.service.config import AlgorithmSettings
from algorithm.service.model_cache import ModelCache
from algorithm.service.observability import record_served_version
from algorithm.service.shadow import ShadowScorer
from core import serving_protocol
from core.jobs import JobStore
from core.serving_protocol import ShadowCounts

log = logging.getLogger(__name__)


class ServingRuntime:
    def __init__(
        self,
        settings: AlgorithmSettings,
        *,
        job_store: JobStore,
        enqueue: Callable[[str], None],
        redis_client: redis.Redis,
        on_close: list[Callable[[], None]],
    ) -> None:
        self.settings = settings
        self.job_store = job_store
        self.enqueue = enqueue
        self.redis = redis_client
        self._on_close = on_close  # blocking clean-ups (connections), run off the loop
        shadowing = settings.shadow_fraction > 0
        self.models = ModelCache(
            settings.model_root,
            signing_keys=SigningKeys.from_secrets(settings.model_signing_key),
            keep_challenger=shadowing,
            store=open_store(
                settings.model_store_url,
                model_root=settings.model_root,
                cache_dir=settings.model_cache_dir,
                cache_max_bytes=settings.model_cache_max_bytes,
                region=settings.aws_region,
            ),
        )
        # Serve the desired (else the published) model from the first request on.
        self.models.follow(_desired_or_none(redis_client))
        record_served_version(None, self.models.version)  # "none" until a model is served
        self.batcher = MicroBatcher(
            lambda: self.models.current,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
        )
        self.shadow = (
            ShadowScorer(
                self.models,
                fraction=settings.shadow_fraction,
                queue_size=settings.shadow_queue_size,
            )
            if shadowing
            else None
        )
        self.follower = ChampionFollower(
            self.models,
            redis_url=settings.redis_url,
            poll_seconds=settings.desired_poll_ms / 1000,
            fallback_poll_seconds=settings.model_poll_ms / 1000,
            shadow_counts=self.shadow.counts if self.shadow else ShadowCounts,
        )
        self._started = False

    async def predict(self, texts: list[str], top_k: int | None = None) -> Prediction:
        """Labels (and `top_k` scores) for `texts`; with no model yet, look for one first."""
        if self.models.current is None:
            await self.follower.ensure_model(self.settings.model_check_ms / 1000)
        prediction = await self.batcher.predict(texts, top_k)
        if self.shadow is not None:  # the one comparison shadow scoring costs when it is off
            self.shadow.offer(texts, prediction.labels, prediction.version)
        return prediction

    async def start(self) -> None:
        """Start following the registry (and shadow scoring) on the running loop."""
        if not self._started:
            self._started = True
            await self.follower.start()
            if self.shadow is not None:
                await self.shadow.start()

    async def aclose(self) -> None:
        """Stop following, the shadow scorer and the batcher; close the connections."""
        if self._started:
            self._started = False
            await self.follower.aclose()
            if self.shadow is not None:
                await self.shadow.aclose()
        await self.batcher.close()
        for close in self._on_close:
            await asyncio.to_thread(close)


def _desired_or_none(client: redis.Redis) -> serving_protocol.Desired | None:
    """The desired state at startup; None (follow `current`) when Redis cannot say."""
    try:
        return serving_protocol.read_desired(client)
    except (redis.RedisError, OSError) as exc:
        log.warning("cannot read the desired versions at startup, following `current`: %s", exc)
        return None
