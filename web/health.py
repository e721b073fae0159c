"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from web.errors import AlgorithmUnavailable, json_errors
from web.proxy.algorithm_client import get_client

log = logging.getLogger(__name__)


@json_errors("GET")
async def live(request: HttpRequest) -> JsonResponse:
    """The process is up and serving HTTP."""
    return JsonResponse({"status": "ok"})


@json_errors("GET")
async def ready(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the algorithm service answer; the body names what does not.

    Anonymous callers reach this: it says "ok" or "failed" per check and nothing more (no
    exception text, no addresses, no paths); the reason goes to the log instead.
    """
    checks = {
        "database": await sync_to_async(_check_database)(),
        "algorithm": await _check_algorithm(),
    }
    healthy = all(result == OK for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


OK, FAILED = "ok", "failed"


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return OK
    except Exception as exc:  # any failure means "not ready", reported, never raised
        connection.close()
        log.warning("readiness: the database does not answer (%s)", type(exc).__name__)
        return FAILED


async def _check_algorithm() -> str:
    try:
        answer = await get_client().call("GET", "/health/live")
    except AlgorithmUnavailable as exc:
        log.warning("readiness: the algorithm service does not answer (%s)", exc.code)
        return FAILED
    if answer.status != 200:
        log.warning("readiness: the algorithm service answers %d", answer.status)
        return FAILED
    return OK
