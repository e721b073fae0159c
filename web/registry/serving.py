"""Web's Redis client for the registry-to-serving protocol (declared in core/serving_protocol.py).

PostgreSQL's alias table is the truth. After a move commits, `announce_desired` reads champion,
challenger and a sequence number from one snapshot (`core.registry.read_desired`) and announces
them (`core.serving_protocol.announce`); the algorithm processes follow it. An announcement
Redis missed is made again by `reannounce_if_behind`, which every web process runs every second.
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache
from typing import Any

import redis
from django.db import close_old_connections, connection

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


def reannounce_if_behind() -> bool:
    """Announce the registry's desired state where Redis lacks it or says an older one.

    For the reconciler's own thread (web/registry/reconciler.py): its connection is checked
    before the look, closed after an outage, and handed back afterwards where the settings say
    connections do not persist. True when an announcement was made.
    """
    close_old_connections()
    try:
        desired = registry.read_desired(DjangoDatabase())
    except DATABASE_OUTAGES:
        with contextlib.suppress(*DATABASE_OUTAGES):
            connection.close()  # the server cut it: the next look reconnects
        raise
    finally:
        close_old_connections()
    return serving_protocol.announce_if_behind(get_redis(), desired)


def read_desired() -> dict[str, Any] | None:
    """What Redis tells the replicas to serve (None when unset or unreadable)."""
    try:
        desired = serving_protocol.read_desired(get_redis())
    except redis.RedisError:
        logger.warning("could not read the desired versions from Redis", exc_info=True)
        return None
    return desired.model_dump() if desired else None


def read_replica_reports() -> list[dict[str, Any]]:
    """Each live algorithm process's report: the version it loaded and its last load error."""
    try:
        reports = serving_protocol.read_reports(get_redis())
    except redis.RedisError:
        logger.warning("could not read the replica reports from Redis", exc_info=True)
        return []
    return [report.model_dump() for report in reports]
