"""The registry reconciler: Redis announces what PostgreSQL's aliases say, even after it missed it.

An alias move announces the new desired versions after its commit, but an announcement made
while Redis is down is lost (the move still answers 200), and a Redis that restarts empty has
none. So every web process runs one `RegistryReconciler` (started and stopped by web/asgi.py's
lifespan): every REGISTRY_RECONCILE_SECONDS it compares the registry with the announced state
of every model name and announces again where Redis is behind
(`web.registry.serving.reannounce_if_behind`, a compare-and-set on the sequence number:
processes doing it at once are harmless). The algorithm
processes follow the announcement as they always do, so every replica serves the registry's
champion within a couple of seconds of Redis answering again.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from web.registry.serving import reannounce_if_behind

log = logging.getLogger(__name__)


class RegistryReconciler:
    """One background task comparing the registry with Redis; its database work in one thread."""

    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        # One thread of its own: one database connection, and a slow Redis never holds up the
        # threads that serve requests.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-reconcile")
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # log a failure once per outage, not every interval

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop, after the look in flight (bounded by the database and Redis timeouts)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, connections.close_all)
        self._thread.shutdown(wait=False)

    async def reconcile(self) -> bool:
        """One look; True when it announced. Failures are logged, never raised."""
        loop = asyncio.get_running_loop()
        try:
            announced = await loop.run_in_executor(self._thread, reannounce_if_behind)
        except Exception as exc:  # the reconciler outlives any outage (Redis or PostgreSQL)
            if not self._failing:
                log.warning("registry reconciler: %s: %s; trying again", type(exc).__name__, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("registry reconciler: PostgreSQL and Redis answer again")
        self._failing = False
        if announced:
            log.info("registry reconciler: Redis was behind the registry; announced again")
        return announced

    async def _run(self) -> None:
        while True:
            await self.reconcile()
            await asyncio.sleep(self._interval)
