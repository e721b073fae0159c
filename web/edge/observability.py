"""Request ids, request metrics, the access log and `GET /metrics` for web.

`observe_request` (the outermost middleware) takes the client's `X-Request-ID` (or makes one),
puts it in `REQUEST_ID` for every log line and for the calls to the algorithm service, sets
`request.request_id`, returns it on every response (errors included), records
`http_server_request_duration_seconds` by route template and writes one access line per request.
It is async-native: a sync middleware would cost a thread hop per request (see
web/edge/middleware.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import Counter, Histogram

from core.logs import REQUEST_ID, REQUEST_ID_HEADER, accepted_request_id
from core.metrics import (
    CONTENT_TYPE,
    HTTP_DURATION,
    http_method_label,
    labelled,
    render_metrics,
    scrape_allowed,
)
from web.config import get_settings
from web.errors import InvalidToken, Unauthorized, json_errors

access_log = logging.getLogger("web.access")
REQUEST_ID_META = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
UNMATCHED_ROUTE = "unmatched"  # 404s: never the raw path, which would add a series per URL

ALGORITHM_CALLS = Counter(
    "textclf_web_algorithm_calls_total",
    "Calls from web to the algorithm service, by outcome (ok, error_status, unavailable, timeout).",
    ["outcome"],
)
ALGORITHM_CALL_DURATION = Histogram(
    "textclf_web_algorithm_call_duration_seconds",
    "Duration of web's calls to the algorithm service, retries included, by outcome.",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COALESCED_BATCH_SIZE = Histogram(
    "textclf_web_coalesced_batch_size",
    "Single-text predictions that shared one call to the algorithm service.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
_algorithm_call = labelled(ALGORITHM_CALLS)
_algorithm_call_duration = labelled(ALGORITHM_CALL_DURATION)
_request_duration = labelled(HTTP_DURATION)


def record_algorithm_call(outcome: str, seconds: float) -> None:
    """Count one call to the algorithm service (web/proxy/algorithm_client.py)."""
    _algorithm_call(outcome).inc()
    _algorithm_call_duration(outcome).observe(seconds)


def record_coalesced_batch(size: int) -> None:
    COALESCED_BATCH_SIZE.observe(size)


@functools.lru_cache(maxsize=512)
def readable_route(pattern: str) -> str:
    """A URL pattern as a template: `^api/train/(?P<job_id>[^/]+)/?$` -> `/api/train/{job_id}/`."""
    text = pattern.replace("^", "").replace("$", "").replace("/?", "/")
    parts, index = [], 0
    while (start := text.find("(?P<", index)) != -1:
        name_end = text.index(">", start)
        parts += [text[index:start], "{" + text[start + 4 : name_end] + "}"]
        index = _group_end(text, name_end)
    parts.append(text[index:])
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", "".join(parts))  # path(): <int:pk> -> {pk}
    return "/" + text.lstrip("/")


def _group_end(text: str, position: int) -> int:
    """The index after the parenthesis that closes the group open before `position`."""
    depth, in_class = 1, False
    for index in range(position, len(text)):
        char = text[index]
        if char == "\\":
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return index + 1
    return len(text)


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return readable_route(match.route) if match is not None and match.route else UNMATCHED_ROUTE


class _Observer:
    """What both forms of `observe_request` do before and after the view."""

    __slots__ = ("access_log",)

    def __init__(self) -> None:
        self.access_log = get_settings().access_log

    @staticmethod
    def begin(request: HttpRequest) -> Any:
        # META, not request.headers: that one parses every header on first use (tens of us).
        request_id = accepted_request_id(request.META.get(REQUEST_ID_META))
        request.request_id = request_id
        return REQUEST_ID.set(request_id)

    def finish(self, request: HttpRequest, response: HttpResponse, started: float) -> None:
        seconds = time.perf_counter() - started
        response[REQUEST_ID_HEADER] = request.request_id
        route, status = route_of(request), response.status_code
        method = http_method_label(str(request.method))
        _request_duration(route, method, str(status)).observe(seconds)
        if self.access_log:
            duration_ms = round(seconds * 1000, 2)
            access_log.info(
                "%s %s %s %.2f ms",
                request.method,
                route,
                status,
                duration_ms,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )


@sync_and_async_middleware
def observe_request(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Accept or make the request id and return it; time the request; log the access line.

    One middleware for the three, not one each: every layer of async middleware is another
    coroutine per request, and they share the clock reading and the route.
    """
    observer = _Observer()
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            started, token = time.perf_counter(), observer.begin(request)
            try:
                response: HttpResponse = await get_response(request)
                observer.finish(request, response, started)
                return response
            finally:
                REQUEST_ID.reset(token)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        started, token = time.perf_counter(), observer.begin(request)
        try:
            response: HttpResponse = get_response(request)
            observer.finish(request, response, started)
            return response
        finally:
            REQUEST_ID.reset(token)

    return middleware


@json_errors("GET")
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: every web process's metrics; open unless METRICS_TOKEN is set."""
    presented = request.headers.get("Authorization")
    if not scrape_allowed(presented, get_settings().metrics_token):
        refusal = InvalidToken if presented else Unauthorized
        raise refusal("GET /metrics needs the METRICS_TOKEN bearer token.")
    body = await asyncio.to_thread(render_metrics)
    return HttpResponse(body, content_type=CONTENT_TYPE)
