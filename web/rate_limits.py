"""Rate limits shared by every web process and replica, counted atomically in Redis.

Each (scope, client) pair has a sliding-window counter in Redis (the `limits` library: one Lua
script per hit, so concurrent processes cannot both take the last request). A Redis round trip
per request would cost real throughput on predict, so a process reserves quota in small batches
(`Scope.batch`) and spends it locally for at most `RESERVATION_SECONDS`; concurrent requests of
one client wait for one reservation rather than each calling Redis. The trade: a process
never admits a request Redis did not count, so the sum over all processes stays within the limit;
but reservations a process does not spend in time lapse, so a client spread over P processes may
be refused up to P x (batch - 1) requests early in a window. Scopes with small limits use a batch
of 1 and are exact. A refusal is remembered locally until its Retry-After, so a runaway script
does not cost a Redis call per request.

When Redis does not answer, each scope fails open (the request goes through) or closed (503),
as its `fail_open` says; Redis is then left alone for `REDIS_RETRY_SECONDS` and a warning is
logged once per such pause.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
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
MAX_BATCH = 20
MAX_TRACKED_CLIENTS = 10_000  # local entries kept per process before the expired are pruned


@dataclass(frozen=True)
class Scope:
    """A named limit: requests per minute per client (0: off), and its Redis-outage policy."""

    name: str
    per_minute: int
    fail_open: bool

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
    # One reservation at a time: concurrent requests wait for it instead of each calling Redis.
    refilling: asyncio.Lock = field(default_factory=asyncio.Lock)


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
        self._items = {scope.name: RateLimitItemPerMinute(scope.per_minute) for scope in scopes}
        self._local: dict[tuple[str, str], _Local] = {}
        self._redis_down_until = 0.0

    async def acquire(self, scope_name: str, client: str) -> Decision:
        """Count one request of `client` in the scope; say whether it may go on."""
        scope = self.scopes[scope_name]
        if scope.per_minute <= 0:
            return ALLOW
        local = self._local_entry(scope_name, client, time.monotonic())
        decision = self._take_local(local)
        if decision is not None:
            return decision
        async with local.refilling:
            decision = self._take_local(local)  # what the reservation we waited for brought
            if decision is not None:
                return decision
            return await self._reserve_or_degrade(scope, client, local)

    @staticmethod
    def _take_local(local: _Local) -> Decision | None:
        """A decision from what this process holds, or None when Redis must be asked."""
        now = time.monotonic()
        if now < local.refused_until:
            return Decision(allowed=False, retry_after=math.ceil(local.refused_until - now))
        if local.tokens > 0 and now < local.tokens_until:
            local.tokens -= 1
            return ALLOW
        return None

    async def _reserve_or_degrade(self, scope: Scope, client: str, local: _Local) -> Decision:
        if time.monotonic() < self._redis_down_until:
            return self._without_redis(scope)
        try:
            return await self._reserve(scope, client, local)
        except StorageError as exc:
            self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            log.warning(
                "rate limits: Redis does not answer (%s); scopes fail open or closed as set for "
                "the next %.0f s",
                type(exc.storage_error).__name__,
                REDIS_RETRY_SECONDS,
            )
            return self._without_redis(scope)

    async def _reserve(self, scope: Scope, client: str, local: _Local) -> Decision:
        item = self._items[scope.name]
        taken = scope.batch
        allowed = await self._strategy.hit(item, scope.name, client, cost=taken)
        if not allowed and taken > 1:  # less than a batch left: take what one request needs
            taken = 1
            allowed = await self._strategy.hit(item, scope.name, client)
        now = time.monotonic()
        if allowed:
            local.tokens = taken - 1  # whatever was left had lapsed
            local.tokens_until = now + RESERVATION_SECONDS
            return ALLOW
        stats = await self._strategy.get_window_stats(item, scope.name, client)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        local.refused_until = now + retry_after
        return Decision(allowed=False, retry_after=retry_after)

    def _local_entry(self, scope_name: str, client: str, now: float) -> _Local:
        if len(self._local) >= MAX_TRACKED_CLIENTS:
            self._local = {
                key: entry
                for key, entry in self._local.items()
                if entry.tokens_until > now or entry.refused_until > now
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
        """Close the Redis connections."""
        await self._pool.aclose()
