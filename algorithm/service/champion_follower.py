"""One process following the registry: pushed at once, polled as the fallback, reported back.

Three tasks on the service's event loop. A subscriber on `textclf:registry:changed` wakes the
reconciler the moment an alias moves (and after every reconnect, in case it missed a message).
The reconciler reads the desired state and has the model cache follow it off the loop; it also
runs every `poll_seconds` without being woken (every `fallback_poll_seconds`, following the
`current` link, while no desired state exists), so a lost message costs a second, not a move. A
reporter rewrites this replica's report well within its TTL, and the reconciler rewrites it at
once after every load attempt. Reconciliations never overlap; a predict that finds no model
shares the next one (`ensure_model`). Every loaded model name (and every pinned one) is followed:
one MGET reads all their desired states, and each name's cache follows its own, one after the
other; a name that is not loaded is not followed (its first request reads its state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis
import redis.asyncio

from algorithm.service.memory import rss_bytes
from algorithm.service.model_pool import ModelPool
from core import serving_protocol
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired, ReplicaReport, ShadowCounts

log = logging.getLogger(__name__)
# A restarted Redis is found again within this: the registry's champion must be served within
# seconds of Redis answering, and a failed connect attempt costs next to nothing.
RECONNECT_MAX_SECONDS = 1.0
CLOSE_SECONDS = 3.0


class ChampionFollower:
    def __init__(
        self,
        pool: ModelPool,
        *,
        redis_client: redis.Redis,
        redis_url: str,
        poll_seconds: float,
        fallback_poll_seconds: float,
        shadow_counts: Callable[[], ShadowCounts] = ShadowCounts,
    ) -> None:
        self.pool = pool
        self.models = pool.served[DEFAULT_MODEL].cache
        self._sync_redis = redis_client  # read_many_desired's MGET, in a thread
        self.replica = serving_protocol.replica_name()
        self._redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        self._poll_seconds = poll_seconds
        self._fallback_poll_seconds = fallback_poll_seconds
        self._shadow_counts = shadow_counts
        self._desired_known = False
        self._redis_reachable = True  # warn once when it stops answering, not on every poll
        self._wake = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._check: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._report_due = False
        pool.on_change = self._pool_changed

    def _pool_changed(self) -> None:
        """A model was loaded or unloaded: report it, and look at its desired state again."""
        self._report_due = True
        self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for job in (self._listen, self._poll, self._report_periodically):
            self._tasks.append(loop.create_task(self._forever(job)))

    async def aclose(self) -> None:
        """Stop following; remove this replica's report so nobody waits for it.

        Bounded: shutting down never waits on Redis for more than a few seconds.
        """
        self._closing = True
        tasks = [*self._tasks, *([self._check] if self._check else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        self._tasks.clear()
        await _bounded(self._redis.delete(serving_protocol.report_key(self.replica)), "unreport")
        await _bounded(self._redis.aclose(), "close Redis")

    async def ensure_model(self, timeout: float) -> None:
        """With no model loaded, look for one (at most `timeout` s; callers share one look)."""
        if self.models.current is not None:
            return
        if self._check is None or self._check.done():
            self._check = asyncio.get_running_loop().create_task(self.reconcile())
        # asyncio.wait, not wait_for: a look that takes longer goes on for the next request.
        await asyncio.wait([self._check], timeout=timeout)

    async def reconcile(self) -> None:
        """Load what the registry wants now; report at once after a load attempt or a change."""
        async with self._reconciling:
            names = self.pool.followed()
            desired = await self._read_desired(names)
            before = self._state()
            for name in names:
                try:
                    await self.pool.follow(name, desired.get(name))
                except Exception:  # the follower must outlive any surprise
                    log.exception("following the registry for model %s failed", name)
            if self._state() != before or self._report_due:
                self._report_due = False
                await self.report()

    async def report(self) -> None:
        """Write this replica's report (what it serves, its last load error, shadow counts)."""
        models = self.models
        report = ReplicaReport(
            replica=self.replica,
            version=models.version,
            challenger=models.challenger_version,
            error=models.last_error,
            error_version=models.error_version,
            loaded_at=models.loaded_at,
            shadow=self._shadow_counts(),
            models=self.pool.reports(),
            memory_budget_bytes=self.pool.budget,
            rss_bytes=rss_bytes() or None,
        )
        try:
            await self._redis.set(
                serving_protocol.report_key(self.replica),
                report.model_dump_json(),
                ex=serving_protocol.REPORT_TTL_SECONDS,
            )
        except (redis.RedisError, OSError) as exc:
            if self._redis_reachable:
                log.warning("cannot report what replica %s serves: %s", self.replica, exc)

    def _state(self) -> tuple[object, ...]:
        models = self.models
        return (
            models.load_attempts,
            models.version,
            models.challenger_version,
            models.last_error,
            self.pool.state(),
        )

    async def _read_desired(self, names: list[str]) -> dict[str, Desired | None]:
        """Each name's desired state; none at all while Redis does not answer (then `default`
        follows `current` and the other names keep what they serve)."""
        try:
            desired = await asyncio.to_thread(
                serving_protocol.read_many_desired, self._sync_redis, names
            )
        except (redis.RedisError, OSError) as exc:
            if self._redis_reachable:
                log.warning("cannot read the desired versions, following `current`: %s", exc)
            self._redis_reachable = False
            desired = {}
        else:
            self._redis_reachable = True
        self._desired_known = desired.get(DEFAULT_MODEL) is not None
        return desired

    async def _poll(self) -> None:
        interval = self._poll_seconds if self._desired_known else self._fallback_poll_seconds
        # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation that
        # arrives as its timeout fires, and the follower would never stop.
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([woken], timeout=interval)
        finally:
            woken.cancel()
        self._wake.clear()
        await self.reconcile()

    async def _listen(self) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(serving_protocol.CHANGED_CHANNEL)
            self._wake.set()  # a move announced while we were not subscribed
            await self.report()  # a restarted Redis learns at once what this replica serves
            while True:
                # A bounded wait (below the socket timeout) so a dead connection shows up.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    self._wake.set()

    async def _report_periodically(self) -> None:
        await self.report()
        await asyncio.sleep(serving_protocol.REPORT_INTERVAL_SECONDS)

    async def _forever(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `job` again and again until closed; back off while it fails (Redis restarting)."""
        backoff = 0.1
        while not self._closing:
            try:
                await job()
                backoff = 0.1
                continue
            except (redis.RedisError, OSError) as exc:
                log.warning("%s: %s; retrying in %.1f s", job.__name__, exc, backoff)
            except Exception:
                log.exception("%s failed; retrying in %.1f s", job.__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)


async def _bounded(step: Awaitable[object], what: str) -> None:
    """Await a shutdown step for at most CLOSE_SECONDS; its failure is logged, not raised."""
    task = asyncio.ensure_future(step)
    await asyncio.wait([task], timeout=CLOSE_SECONDS)
    if not task.done():
        task.cancel()
        log.warning("%s: no answer within %.0f s", what, CLOSE_SECONDS)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log.warning("%s: %s", what, error)
