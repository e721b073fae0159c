"""What one algorithm process owns: model cache, batcher, model poller, job store and queue.

Created by the app factory; the poller starts and everything closes with the server's lifespan,
on the server's event loop. Nothing here is created lazily by a view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis

from algorithm.batcher import MicroBatcher
from algorithm.config import AlgorithmSettings
from algorithm.jobs import JobStore
from algorithm.model_cache import ModelCache
from algorithm.observability import record_served_version

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
        self.models = ModelCache(settings.model_root, poll_ms=settings.model_poll_ms)
        self.models.refresh()  # serve the published model from the first request on
        record_served_version(None, self.models.version)  # "none" until a model is served
        self.batcher = MicroBatcher(
            lambda: self.models.current,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
        )
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start polling for new model versions on the running loop."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self.models.watch())

    async def aclose(self) -> None:
        """Stop the poller and the batcher; close the connections."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.batcher.close()
        for close in self._on_close:
            await asyncio.to_thread(close)
