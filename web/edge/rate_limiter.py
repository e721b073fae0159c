"""Rate limits shared by every web process and replica, counted atomically in Redis.

Each (scope, client) pair has a sliding-window counter in Redis (the `limits` library: one Lua
script per hit, so concurrent processes cannot both take the last request). A Redis round trip
per request would cost real throughput on predict, so a process reserves quota in small batches
(`Scope.batch`) and spends it locally for at most `RESERVATION_SECONDS`. When a batch is half
spent, the next one is reserved in the background, so under steady traffic no request waits for
Redis (a lock held across each reservation queued every request behind it and cut web's
predict throughput by about 15 %: loadtests/predict_path_cost.py); requests that do find no
tokens all await the one reservation in flight. The trade: a process never admits a request
Redis did not count, so the sum over all processes stays within the limit; but reservations a
process does not spend in time lapse, so a client spread over P processes may be refused up to
P x 1.5 x batch requests early in a window. Scopes with small limits use a batch of 1, reserve
nothing ahead and are exact. A refusal is remembered locally until its Retry-After, so a
runaway script does not cost a Redis call per request.

Some scopes count events rather than requests (failed logins, refused tokens): `count` records
one exactly in Redis after the fact and `over_limit` says, before the work, whether the client is
refused (from the refusal this process remembers, or from Redis where a round trip is affordable).

When Redis does not answer, each scope fails open (the request goes through) or closed (503),
as its `fail_open` says; Redis is then left alone for `REDIS_RETRY_SECONDS` and a warning is
logged once per such pause.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

log = logging.getLogger(__name__)

RESERVATION_SECONDS = 1.0
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5
MAX_BATCH = 100
MAX_TRACKED_CLIENTS = 10_000  # local entries kept per process before the expired are pruned


@dataclass(frozen=True)
class Scope:
    """A named limit: requests per minute per client (0: off), and its Redis-outage policy.

    With `window_minutes` above 1, `per_minute` is the limit of that whole window (the failed
    logins of a quarter of an hour).
    """

    name: str
    per_minute: int
    fail_open: bool
    window_minutes: int = 1

    @property
    def batch(self) -> int:
        """Requests reserved per Redis call: at most a thousandth of the limit, at least 1."""
        return max(1, min(MAX_BATCH, self.per_minute // 1000))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # seconds, when refused
    limiter_down: bool = False  # refused because Redis did not answer (a fail-closed scope)


ALLOW = Decision(allowed=True)


@dataclass
class _Local:
    """What this process holds for one client in one scope."""

    tokens: int = 0
    tokens_until: float = 0.0
    refused_until: float = 0.0
    # The reservation in flight, if any: every request that needs it awaits this one task.
    refill: asyncio.Task[None] | None = None


class SharedRateLimiter:
    def __init__(self, redis_url: str, scopes: list[Scope]) -> None:
        # Our own pool, so shutdown can close it (the storage has no close of its own).
        self._pool = redis.asyncio.ConnectionPool.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        # (Its options are typed as scalars, though a pool is what it passes on to redis-py.)
        pool_option: dict[str, Any] = {"connection_pool": self._pool}
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            wrap_exceptions=True,  # every Redis failure is a StorageError
            key_prefix="textclf:ratelimit",
            **pool_option,
        )
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self.scopes = {scope.name: scope for scope in scopes}
        self._items = {
            scope.name: RateLimitItemPerMinute(scope.per_minute, multiples=scope.window_minutes)
            for scope in scopes
        }
        self._local: dict[tuple[str, str], _Local] = {}
        self._redis_down_until = 0.0

    async def acquire(self, scope_name: str, client: str) -> Decision:
        """Count one request of `client` in the scope; say whether it may go on."""
        scope = self.scopes.get(scope_name)
        if scope is None or scope.per_minute <= 0:  # a scope this limiter has not: unlimited
            return ALLOW
        local = self._local_entry(scope_name, client, time.monotonic())
        while True:
            decision = self._take_local(scope, client, local)
            if decision is not None:
                return decision
            if time.monotonic() < self._redis_down_until:
                return self._without_redis(scope)
            await asyncio.shield(self._start_refill(scope, client, local))

    async def over_limit(self, scope_name: str, client: str, *, ask_redis: bool) -> Decision:
        """Whether `client` is refused in the scope now, counting nothing.

        A refusal this process remembers answers at once; otherwise Redis is asked only when
        `ask_redis` (the caller can afford a round trip), else the request may go on.
        """
        scope = self.scopes.get(scope_name)
        if scope is None or scope.per_minute <= 0:
            return ALLOW
        local = self._local.get((scope_name, client))
        if local is None and not ask_redis:
            return ALLOW  # the common case on every API call: nothing refused, nothing to ask
        now = time.monotonic()
        if local is not None and now < local.refused_until:
            return Decision(allowed=False, retry_after=math.ceil(local.refused_until - now))
        if not ask_redis or now < self._redis_down_until:
            return ALLOW
        local = self._local_entry(scope_name, client, now)
        try:
            if await self._strategy.test(self._items[scope_name], scope_name, client):
                return ALLOW
            await self._remember_refusal(scope, client, local)
        except StorageError as exc:
            self._note_redis_down(exc)
            return ALLOW
        return Decision(allowed=False, retry_after=math.ceil(local.refused_until - now))

    async def count(self, scope_name: str, client: str) -> None:
        """Count one event of `client` (a failed login, a refused token); remember a refusal."""
        scope = self.scopes.get(scope_name)
        if scope is None or scope.per_minute <= 0 or time.monotonic() < self._redis_down_until:
            return
        local = self._local_entry(scope_name, client, time.monotonic())
        try:
            if not await self._strategy.hit(self._items[scope_name], scope_name, client):
                await self._remember_refusal(scope, client, local)
        except StorageError as exc:
            self._note_redis_down(exc)

    async def _remember_refusal(self, scope: Scope, client: str, local: _Local) -> None:
        stats = await self._strategy.get_window_stats(self._items[scope.name], scope.name, client)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        local.refused_until = time.monotonic() + retry_after

    def _note_redis_down(self, exc: StorageError) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning(
            "rate limits: Redis does not answer (%s); scopes fail open or closed as set for "
            "the next %.0f s",
            type(exc.storage_error).__name__,
            REDIS_RETRY_SECONDS,
        )

    def _take_local(self, scope: Scope, client: str, local: _Local) -> Decision | None:
        """A decision from what this process holds, or None when a reservation must come first.

        Taking the last tokens of a batch starts the next reservation in the background, so
        under steady traffic requests find tokens waiting instead of queueing behind Redis.
        """
        now = time.monotonic()
        if local.tokens > 0 and now < local.tokens_until:
            local.tokens -= 1
            if scope.batch > 1 and local.tokens < scope.batch // 2 and local.refill is None:
                self._start_refill(scope, client, local)
            return ALLOW
        if now < local.refused_until:
            return Decision(allowed=False, retry_after=math.ceil(local.refused_until - now))
        return None

    def _start_refill(self, scope: Scope, client: str, local: _Local) -> asyncio.Task[None]:
        refill = local.refill
        if refill is None or refill.get_loop() is not asyncio.get_running_loop():
            refill = local.refill = asyncio.get_running_loop().create_task(
                self._refill(scope, client, local)
            )
        return refill

    async def _refill(self, scope: Scope, client: str, local: _Local) -> None:
        """Reserve a batch (or what is left) in Redis, or note a refusal or an outage."""
        try:
            if time.monotonic() >= self._redis_down_until:
                await self._reserve(scope, client, local)
        except StorageError as exc:
            self._note_redis_down(exc)
        finally:
            local.refill = None

    async def _reserve(self, scope: Scope, client: str, local: _Local) -> None:
        item = self._items[scope.name]
        taken = scope.batch
        allowed = await self._strategy.hit(item, scope.name, client, cost=taken)
        if not allowed and taken > 1:  # less than a batch left: take what one request needs
            taken = 1
            allowed = await self._strategy.hit(item, scope.name, client)
        now = time.monotonic()
        if allowed:
            held = local.tokens if now < local.tokens_until else 0  # older tokens lapse
            local.tokens = held + taken
            local.tokens_until = now + RESERVATION_SECONDS
            return
        await self._remember_refusal(scope, client, local)

    def _local_entry(self, scope_name: str, client: str, now: float) -> _Local:
        if len(self._local) >= MAX_TRACKED_CLIENTS:
            self._local = {
                key: entry
                for key, entry in self._local.items()
                if entry.tokens_until > now or entry.refused_until > now or entry.refill
            }
        local = self._local.get((scope_name, client))
        if local is None:
            local = self._local[scope_name, client] = _Local()
        return local

    @staticmethod
    def _without_redis(scope: Scope) -> Decision:
        if scope.fail_open:
            return ALLOW
        retry_after = math.ceil(REDIS_RETRY_SECONDS)
        return Decision(allowed=False, retry_after=retry_after, limiter_down=True)

    async def aclose(self) -> None:
        """Let reservations in flight finish (they may be background ones), then close Redis."""
        loop = asyncio.get_running_loop()
        refills = [
            local.refill
            for local in self._local.values()
            if local.refill is not None and local.refill.get_loop() is loop
        ]
        await asyncio.gather(*refills, return_exceptions=True)
        await self._pool.aclose()
