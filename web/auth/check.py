"""The per-request token check: an in-process cache in front of one indexed query.

What a secret stands for (or that it stands for nothing) is cached by the secret's digest for
AUTH_CACHE_SECONDS (default 2, at most 5), so a request costs a hash and a dict lookup. The
database is asked only on a miss, and concurrent requests of one process that miss on the same
digest share one query. Async misses query from one long-lived thread of the cache's own, which
keeps its database connection (Django's per-request threads would open one per miss).
A revocation therefore reaches every process within the TTL; an expiry is checked on every hit,
so a token stops working the moment it expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import close_old_connections, connections
from django.utils import timezone

from web.auth.models import ApiToken
from web.auth.roles import Role
from web.auth.tokens import digest_of
from web.config import get_settings

MAX_ENTRIES = 10_000  # bounds memory when many different (mostly bad) secrets are tried


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token is, as requests see it: nothing secret in here."""

    token_id: str  # the database id: stable across rotations, safe to log and to key limits on
    name: str
    role: Role
    expires_at: float | None  # time.time() seconds

    is_authenticated = True  # for DRF, which treats this as request.user

    @property
    def actor(self) -> str:
        return f"token:{self.name}"

    def is_current(self) -> bool:
        return self.expires_at is None or time.time() < self.expires_at


def fetch_identity(digest: str) -> TokenIdentity | None:
    """The identity of the unrevoked token with this digest, from the database."""
    row = (
        ApiToken.objects.filter(digest=digest, revoked_at__isnull=True)
        .values("id", "name", "role", "expires_at")
        .first()
    )
    if row is None or (row["expires_at"] is not None and row["expires_at"] <= timezone.now()):
        return None
    expires_at = row["expires_at"]
    return TokenIdentity(
        token_id=str(row["id"]),
        name=row["name"],
        role=Role.from_label(row["role"]),
        expires_at=expires_at.timestamp() if expires_at is not None else None,
    )


class TokenCache:
    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, TokenIdentity | None]] = {}
        self._pending: dict[str, asyncio.Task[TokenIdentity | None]] = {}
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-check")

    def lookup(self, secret: str) -> TokenIdentity | None:
        """The identity of `secret`, or None: from the cache, else one query (sync callers)."""
        digest = digest_of(secret)
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= self._clock():
            entry = self._store(digest, fetch_identity(digest))
        return _current(entry[1])

    async def alookup(self, secret: str) -> TokenIdentity | None:
        """The same for async callers: one thread hop per miss, shared by concurrent misses."""
        digest = digest_of(secret)
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > self._clock():
            return _current(entry[1])
        task = self._pending.get(digest)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._refresh(digest))
            self._pending[digest] = task
        return _current(await asyncio.shield(task))

    def close_connections(self) -> None:
        """Close the database connection of the thread async misses query from."""
        self._db_thread.submit(connections.close_all).result()

    async def _refresh(self, digest: str) -> TokenIdentity | None:
        try:
            loop = asyncio.get_running_loop()
            identity = await loop.run_in_executor(self._db_thread, _fetch_fresh, digest)
            self._store(digest, identity)
            return identity
        finally:
            self._pending.pop(digest, None)

    def _store(
        self, digest: str, identity: TokenIdentity | None
    ) -> tuple[float, TokenIdentity | None]:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # rare; cheaper than tracking recency on every hit
        entry = (self._clock() + self._ttl, identity)
        self._entries[digest] = entry
        return entry


def _fetch_fresh(digest: str) -> TokenIdentity | None:
    close_old_connections()  # as Django does per request: drop a broken or aged connection
    return fetch_identity(digest)


def _current(identity: TokenIdentity | None) -> TokenIdentity | None:
    return identity if identity is not None and identity.is_current() else None


token_cache = TokenCache(ttl=get_settings().auth_cache_seconds)
