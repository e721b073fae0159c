"""The per-request token check: an in-process cache in front of one indexed query.

What a secret stands for (or that it stands for nothing) is cached by the secret's digest for
AUTH_CACHE_SECONDS (default 2, at most 5), so a request costs a hash and a dict lookup. The
database is asked only on a miss, and concurrent requests of one process that miss on the same
digest share one query. Async misses query from one long-lived thread of the cache's own, which
keeps its database connection (Django's per-request threads would open one per miss).
A revocation therefore reaches every process within the TTL; an expiry is checked on every hit,
so a token stops working the moment it expires.

While the database cannot be reached, an answer the database gave within the last
AUTH_OUTAGE_GRACE_SECONDS (default 60) is trusted instead: predict, which needs nothing else
from PostgreSQL, keeps answering through a restart. Requests then do not wait for the database:
one background query every `OUTAGE_RETRY_SECONDS` looks for its return, and the first answer
ends the grace. A secret not checked within the grace is refused with 503 (`DatabaseUnavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import close_old_connections, connection, connections
from django.utils import timezone

from web.auth.models import ApiToken
from web.auth.roles import Role
from web.auth.tokens import digest_of
from web.config import get_settings
from web.errors import DATABASE_OUTAGES, DatabaseUnavailable

MAX_ENTRIES = 10_000  # bounds memory when many different (mostly bad) secrets are tried
OUTAGE_RETRY_SECONDS = 0.5  # how often, while the database is down, one query looks for it


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token is, as requests see it: nothing secret in here."""

    token_id: str  # the database id: stable across rotations, safe to log and to key limits on
    name: str
    role: Role
    expires_at: float | None  # time.time() seconds
    # The model names the token may use; None: every name (web/auth/scope.py reads it).
    models: frozenset[str] | None = None

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
        .values("id", "name", "role", "expires_at", "models")
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
        models=frozenset(row["models"]) if row["models"] is not None else None,
    )


@dataclass(frozen=True)
class _Entry:
    identity: TokenIdentity | None
    fresh_until: float  # answered from the cache alone until then
    trusted_until: float  # answered from the cache while the database is down, until then


class TokenCache:
    def __init__(
        self,
        *,
        ttl: float,
        outage_grace: float = 0.0,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._outage_grace = outage_grace
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Task[TokenIdentity | None]] = {}
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-check")
        self._database_down = False
        self._next_try = 0.0  # while down: no query before then

    def lookup(self, secret: str) -> TokenIdentity | None:
        """The identity of `secret`, or None: from the cache, else one query (sync callers)."""
        digest = digest_of(secret)
        entry = self._entries.get(digest)
        if entry is not None and entry.fresh_until > self._clock():
            return _current(entry.identity)
        try:
            identity = fetch_identity(digest)
        except DATABASE_OUTAGES:
            self._note_outage()
            return self._trusted(entry)
        self._store(digest, identity)
        return _current(identity)

    async def alookup(self, secret: str) -> TokenIdentity | None:
        """The same for async callers: one thread hop per miss, shared by concurrent misses."""
        digest = digest_of(secret)
        now = self._clock()
        entry = self._entries.get(digest)
        if entry is not None and entry.fresh_until > now:
            return _current(entry.identity)
        if self._database_down:
            if now >= self._next_try:
                self._next_try = now + OUTAGE_RETRY_SECONDS
                self._refresh_task(digest).add_done_callback(_ignore_outage)
            return self._trusted(entry)  # no waiting on a database that is down
        try:
            identity = await asyncio.shield(self._refresh_task(digest))
        except DATABASE_OUTAGES:
            return self._trusted(entry)
        return _current(identity)

    def close_connections(self) -> None:
        """Close the database connection of the thread async misses query from."""
        self._db_thread.submit(connections.close_all).result()

    def _refresh_task(self, digest: str) -> asyncio.Task[TokenIdentity | None]:
        task = self._pending.get(digest)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._refresh(digest))
            self._pending[digest] = task
        return task

    async def _refresh(self, digest: str) -> TokenIdentity | None:
        try:
            loop = asyncio.get_running_loop()
            identity = await loop.run_in_executor(self._db_thread, _fetch_fresh, digest)
        except DATABASE_OUTAGES:
            self._note_outage()
            raise
        finally:
            self._pending.pop(digest, None)
        self._database_down = False
        self._store(digest, identity)
        return identity

    def _note_outage(self) -> None:
        self._database_down = True
        self._next_try = self._clock() + OUTAGE_RETRY_SECONDS

    def _trusted(self, entry: _Entry | None) -> TokenIdentity | None:
        """What the database last said, if it said so recently enough; else 503."""
        if entry is None or entry.trusted_until <= self._clock():
            raise DatabaseUnavailable("The database is unavailable: tokens cannot be checked.")
        return _current(entry.identity)

    def _store(self, digest: str, identity: TokenIdentity | None) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # rare; cheaper than tracking recency on every hit
        now = self._clock()
        self._entries[digest] = _Entry(identity, now + self._ttl, now + self._outage_grace)


def _fetch_fresh(digest: str) -> TokenIdentity | None:
    close_old_connections()  # as Django does per request: drop a broken or aged connection
    try:
        return fetch_identity(digest)
    except DATABASE_OUTAGES:
        with contextlib.suppress(*DATABASE_OUTAGES):
            connection.close()  # never reuse a connection the server cut: the next try reconnects
        raise


def _ignore_outage(task: asyncio.Task[TokenIdentity | None]) -> None:
    """Collect a background query's outage (already noted) so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


def _current(identity: TokenIdentity | None) -> TokenIdentity | None:
    return identity if identity is not None and identity.is_current() else None


token_cache = TokenCache(
    ttl=get_settings().auth_cache_seconds, outage_grace=get_settings().auth_outage_grace_seconds
)
