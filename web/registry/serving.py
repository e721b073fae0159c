"""Web's Redis client for the registry-to-serving protocol (declared in core/serving_protocol.py).

PostgreSQL's alias table is the truth. After a move commits, `announce_desired` reads one
model's champion, challenger and a sequence number from one snapshot (`core.registry.read_desired`)
and announces them (`core.serving_protocol.announce`); the algorithm processes follow it. An
announcement Redis missed is made again by `reannounce_if_behind`, which every web process runs
every second for every registered name: a name's desired key is also how the serving processes
know the name exists, so every name gets one, champion or not.
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache

import redis
from django.db import close_old_connections, connection, transaction

from core import registry, serving_protocol
from core.model_names import DEFAULT_MODEL
from web.config import get_settings
from web.errors import DATABASE_OUTAGES
from web.registry.database import DjangoDatabase

REDIS_TIMEOUT_SECONDS = 2

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The process's Redis client (redis-py pools connections and reconnects by itself)."""
    return redis.Redis.from_url(
        get_settings().redis_url,
        decode_responses=True,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )


def announce_desired(model: str = DEFAULT_MODEL) -> bool:
    """Tell the serving processes what `model`'s aliases say now; False if Redis was not told."""
    desired = registry.read_desired(DjangoDatabase(), model)
    try:
        serving_protocol.announce(get_redis(), desired)
    except redis.RedisError:
        logger.exception("could not announce desired versions %s", desired.model_dump_json())
        return False
    return True


# The reconciler's look reads three registry tables in one statement. Behind a lock (a migration,
# a TRUNCATE) it gives up after this long and looks again at the next interval: it never waits in
# the lock queue, and never deadlocks with a statement locking the same tables in another order
# (PostgreSQL only breaks a deadlock after deadlock_timeout, 1 s, by failing one side).
RECONCILE_LOCK_TIMEOUT_MS = 200


def reannounce_if_behind() -> bool:
    """Announce the registry's desired state of every name where Redis lacks it or is older.

    For the reconciler's own thread (web/registry/reconciler.py): its connection is checked
    before the look, closed after an outage, and handed back afterwards where the settings say
    connections do not persist. One MGET compares every name; only the names behind pay for a
    compare-and-set. True when an announcement was made.
    """
    close_old_connections()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{RECONCILE_LOCK_TIMEOUT_MS}ms'")
            wanted = registry.read_all_desired(DjangoDatabase())
    except DATABASE_OUTAGES:
        with contextlib.suppress(*DATABASE_OUTAGES):
            connection.close()  # the server cut it: the next look reconnects
        raise
    finally:
        close_old_connections()
    client = get_redis()
    announced = serving_protocol.read_many_desired(client, [d.model for d in wanted])
    behind = [d for d in wanted if serving_protocol.is_behind(announced[d.model], d)]
    made = [serving_protocol.announce_if_behind(client, desired) for desired in behind]
    return any(made)


def read_desired(model: str = DEFAULT_MODEL) -> serving_protocol.Desired | None:
    """What Redis tells the replicas to serve of `model` (None when unset or unreadable)."""
    try:
        return serving_protocol.read_desired(get_redis(), model)
    except redis.RedisError:
        logger.warning("could not read the desired versions from Redis", exc_info=True)
        return None


def read_many_desired(models: list[str]) -> dict[str, serving_protocol.Desired | None]:
    """What Redis tells the replicas to serve of each of `models` (None where unset/unreadable)."""
    try:
        return serving_protocol.read_many_desired(get_redis(), models)
    except redis.RedisError:
        logger.warning("could not read the desired versions from Redis", exc_info=True)
        return dict.fromkeys(models)


def read_replica_reports() -> list[serving_protocol.ReplicaReport]:
    """Each live algorithm process's report: what it loaded of each model, its load errors."""
    try:
        return serving_protocol.read_reports(get_redis())
    except redis.RedisError:
        logger.warning("could not read the replica reports from Redis", exc_info=True)
        return []
