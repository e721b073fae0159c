"""Liveness and readiness probes."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from web.errors import AlgorithmUnavailable, json_errors
from web.proxy.algorithm_client import get_client


@json_errors("GET")
async def live(request: HttpRequest) -> JsonResponse:
    """The process is up and serving HTTP."""
    return JsonResponse({"status": "ok"})


@json_errors("GET")
async def ready(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the algorithm service answer; the body says which does not."""
    checks = {
        "database": await sync_to_async(_check_database)(),
        "algorithm": await _check_algorithm(),
    }
    healthy = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means "not ready", reported, never raised
        connection.close()
        return f"error: {type(exc).__name__}"


async def _check_algorithm() -> str:
    try:
        answer = await get_client().call("GET", "/health/live")
    except AlgorithmUnavailable as exc:
        return f"error: {exc}"
    return "ok" if answer.status == 200 else f"error: status {answer.status}"
