"""What one algorithm process owns: its event loop, model cache, batcher and job store.

Created by the app factory and closed at exit; nothing here is created lazily by a view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis

from algorithm.batcher import MicroBatcher
from algorithm.config import AlgorithmSettings
from algorithm.event_loop import LoopThread
from algorithm.model_cache import ModelCache

log = logging.getLogger(__name__)


class ServingRuntime:
    def __init__(
        self,
        settings: AlgorithmSettings,
        *,
        job_store: Any,
        enqueue: Callable[[str], None],
        redis_client: redis.Redis,
    ) -> None:
        self.settings = settings
        self.job_store = job_store
        self.enqueue = enqueue
        self.redis = redis_client
        self.models = ModelCache(settings.model_root, poll_ms=settings.model_poll_ms)
        self.models.refresh()  # serve the published model from the first request on
        self.loop_thread = LoopThread()
        self.batcher = MicroBatcher(
            lambda: self.models.current,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
        )
        self._watcher = asyncio.run_coroutine_threadsafe(
            self._start_watching(), self.loop_thread.loop
        ).result()
        self._closed = False

    async def _start_watching(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.models.watch())

    def close(self) -> None:
        """Stop the poller and the batcher, then the loop thread."""
        if self._closed:
            return
        self._closed = True

        async def shut_down() -> None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            await self.batcher.close()

        self.loop_thread.run(shut_down())
        self.loop_thread.stop()
        self.redis.close()
