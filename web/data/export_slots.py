"""How many exports run at once: per web process, and per token across every process.

An export holds a PostgreSQL connection of its own for as long as its client reads, so exports
are counted before one starts. Per process: a counter (EXPORT_MAX_PER_PROCESS). Per token: a
lease per running export in a Redis sorted set of that token (EXPORT_MAX_PER_TOKEN), scored by
when the lease lapses: LEASE_SECONDS after it was taken or last renewed (the export renews it
while it streams), so a process that dies mid-export leaves leases that lapse within a minute
on their own. With Redis down the per-token limit is not checked (logged); the per-process one is.
One more export than a limit allows is refused with 429 `too_many_exports` and Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from typing import Any

import redis

from web.config import get_settings
from web.errors import ServiceError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
LEASE_SECONDS = 60.0
KEY_PREFIX = "textclf:exports:"
REDIS_TIMEOUT_SECONDS = 0.5
# Drop the lapsed leases, then take one if fewer than the limit are held (atomic in Redis).
TAKE_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], math.ceil(ARGV[2] * 1000))
return 1
"""


class TooManyExports(ServiceError):
    status, code = 429, "too_many_exports"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"{detail} Retry in {RETRY_AFTER_SECONDS} s.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class ExportSlot:
    """One running export's place in both counts; `release` (idempotent) gives it back."""

    def __init__(self, slots: ExportSlots, token_key: str | None, lease: str) -> None:
        self._slots = slots
        self._token_key = token_key
        self._lease = lease
        self._released = False
        self._renewed_at = time.time()

    def release(self) -> None:
        with self._slots.lock:
            if self._released:
                return
            self._released = True
            self._slots.running -= 1
        if self._token_key is not None:
            self._slots.drop_lease(self._token_key, self._lease)

    def renewal_due(self) -> bool:
        """Whether a third of the lease has passed since it was taken or renewed."""
        due = self._renewed_at + self._slots.lease_seconds / 3
        return self._token_key is not None and time.time() >= due

    def renew(self) -> None:
        """Push the lease's end LEASE_SECONDS ahead (a running export, every third of it)."""
        if self._token_key is not None:
            self._renewed_at = time.time()
            self._slots.renew_lease(self._token_key, self._lease, self._renewed_at)

    def release_with(self, owner: Any) -> None:
        """Also release when `owner` (the response) is dropped without its stream ever running."""
        weakref.finalize(owner, self.release)


class ExportSlots:
    def __init__(self, *, per_process: int, per_token: int, lease_seconds: float) -> None:
        self.per_process = per_process
        self.per_token = per_token
        self.lease_seconds = lease_seconds
        self.lock = threading.Lock()
        self.running = 0
        self._redis: redis.Redis | None = None

    def acquire(self, token_id: str | None) -> ExportSlot:
        """A slot for one more export of `token_id`, or TooManyExports."""
        with self.lock:
            if self.running >= self.per_process:
                raise TooManyExports(
                    f"This server already runs {self.per_process} exports (EXPORT_MAX_PER_PROCESS)."
                )
            self.running += 1
        lease = uuid.uuid4().hex
        token_key = KEY_PREFIX + token_id if token_id else None
        if token_key is not None and not self._take_lease(token_key, lease):
            with self.lock:
                self.running -= 1
            raise TooManyExports(
                f"This token already runs {self.per_token} exports (EXPORT_MAX_PER_TOKEN)."
            )
        return ExportSlot(self, token_key, lease)

    def _take_lease(self, key: str, lease: str) -> bool:
        now = time.time()
        try:
            taken = self._client().eval(
                TAKE_LEASE, 1, key, now, now + self.lease_seconds, self.per_token, lease
            )
        except redis.RedisError as exc:
            log.warning("exports: Redis does not answer (%s); per-token limit not checked", exc)
            return True
        return bool(taken)

    def renew_lease(self, key: str, lease: str, now: float) -> None:
        try:
            client = self._client()
            client.zadd(key, {lease: now + self.lease_seconds}, xx=True)
            client.expireat(key, int(now + self.lease_seconds) + 1)
        except redis.RedisError as exc:  # the lease may lapse early: one more export at most
            log.warning("exports: could not renew a lease (%s)", type(exc).__name__)

    def drop_lease(self, key: str, lease: str) -> None:
        try:
            self._client().zrem(key, lease)
        except redis.RedisError as exc:  # the lease lapses on its own
            log.warning("exports: could not give back a lease (%s)", type(exc).__name__)

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                get_settings().redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        return self._redis


def _slots_from_settings() -> ExportSlots:
    config = get_settings()
    return ExportSlots(
        per_process=config.export_max_per_process,
        per_token=config.export_max_per_token,
        lease_seconds=LEASE_SECONDS,
    )


export_slots = _slots_from_settings()
