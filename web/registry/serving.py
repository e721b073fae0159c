"""Web's side of the registry-to-serving protocol in Redis (the one Redis client module of web).

PostgreSQL's alias table is the truth. After a move commits, `announce_desired` reads champion
and challenger with a sequence number (the newest audit id, which grows with every change) from
one snapshot, SETs them under DESIRED_KEY and PUBLISHes the same JSON on CHANGED_CHANNEL in one
MULTI: the algorithm processes follow it. Web must not import the algorithm package, so the names
are repeated here; tests/registry/test_protocol.py checks both sides agree.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
from django.db import connection

from web.config import get_settings

DESIRED_KEY = "textclf:registry:desired"
CHANGED_CHANNEL = "textclf:registry:changed"
REPORT_KEY_PREFIX = "textclf:serving:"
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


def desired_from_database() -> dict[str, Any]:
    """Champion, challenger and seq as one snapshot of the alias and audit tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT version_id FROM model_alias WHERE name = 'champion'), "
            "(SELECT version_id FROM model_alias WHERE name = 'challenger'), "
            "(SELECT coalesce(max(id), 0) FROM audit_event)"
        )
        champion, challenger, seq = cursor.fetchone()
    return {
        "champion": champion,
        "challenger": challenger,
        "seq": int(seq),
        "moved_at": datetime.now(UTC).isoformat(),
    }


def announce_desired() -> bool:
    """Tell the serving processes what the aliases say now; False if Redis could not be told."""
    desired = desired_from_database()
    payload = json.dumps(desired)
    try:
        with get_redis().pipeline(transaction=True) as pipe:
            pipe.set(DESIRED_KEY, payload)
            pipe.publish(CHANGED_CHANNEL, payload)
            pipe.execute()
    except redis.RedisError:
        logger.exception("could not announce desired versions %s", payload)
        return False
    return True


def read_desired() -> dict[str, Any] | None:
    """What Redis tells the replicas to serve (None when unset or unreadable)."""
    try:
        raw = get_redis().get(DESIRED_KEY)
    except redis.RedisError:
        logger.warning("could not read the desired versions from Redis", exc_info=True)
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_replica_reports() -> list[dict[str, Any]]:
    """Each live algorithm process's report: the version it loaded and its last load error."""
    try:
        client = get_redis()
        keys = sorted(client.scan_iter(match=f"{REPORT_KEY_PREFIX}*", count=100))
        raws = client.mget(keys) if keys else []
    except redis.RedisError:
        logger.warning("could not read the replica reports from Redis", exc_info=True)
        return []
    reports = []
    for raw in raws:
        try:
            report = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            continue
        if isinstance(report, dict) and isinstance(report.get("replica"), str):
            reports.append(report)
    return reports
