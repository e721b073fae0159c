"""Every request body bounded by its route before Django stores or authenticates it.

Django's ASGI handler spools a whole body to a temporary file before any middleware runs; this
layer sits in front of it (web/asgi.py) with a cap per route, none above what the route needs.
A `Content-Length` over the cap is answered 413 at once, without reading; a chunked body is cut
off with 413 as soon as it passes the cap; a body not complete within BODY_TIMEOUT_SECONDS is
answered 408; and the bodies the process is receiving share a budget, beyond which a body is
answered 503 (see core/request_body.py). Django then sees the client as gone and answers nothing,
and the server closes the connection, since the rest of the body was never read. So no more
than the cap is ever spooled, and a stalled upload costs one connection for the deadline at most.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.request_body import (
    BodyBudget,
    BodyOverBudget,
    BodyRefused,
    BodyTooLarge,
    BoundedBody,
    declared_length,
    has_body,
)
from web.config import get_settings
from web.errors import PayloadTooLarge, ServiceError

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

KIB = 1024
# GETs, probes, /metrics, POST /api/train/ (which takes no input) and unknown routes.
BODYLESS_MAX_BYTES = 4 * KIB
REGISTRY_MAX_BYTES = 64 * KIB  # an alias move or a version's description and tags
IMPORT_PATH = re.compile(r"^/api/data/import/?$")
# The Open Inference Protocol's infer, with or without a version (web/proxy/inference_protocol.py).
INFER_PATH = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer/?$")
WRITES = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class BodyRoute:
    """The body a route takes on its write methods: at most `max_bytes`, named by `limit`."""

    path: re.Pattern[str]
    max_bytes: int
    limit: str  # what sets the cap, for the 413's detail
    # Read by its view as it arrives (the import): the deadline is per wait, not for the whole.
    streamed: bool = False


def web_body_routes(
    *, import_max_bytes: int, json_max_bytes: int, text_max_chars: int
) -> tuple[BodyRoute, ...]:
    """web's routes that take a body, first match first; any other request gets a few KiB."""
    # One row's text at its longest encoding (12 bytes a character: a JSON surrogate pair
    # "\\ud83d\\ude00", or a 4-byte UTF-8 character percent-encoded in a form), and the rest.
    row_max_bytes = 12 * text_max_chars + 64 * KIB
    return (
        BodyRoute(IMPORT_PATH, import_max_bytes, "IMPORT_MAX_BYTES; split the file", streamed=True),
        BodyRoute(re.compile(r"^/api/predict/?$"), json_max_bytes, "DATA_UPLOAD_MAX_MEMORY_SIZE"),
        BodyRoute(INFER_PATH, json_max_bytes, "DATA_UPLOAD_MAX_MEMORY_SIZE"),
        BodyRoute(re.compile(r"^/api/data/?$"), json_max_bytes, "DATA_UPLOAD_MAX_MEMORY_SIZE"),
        BodyRoute(re.compile(r"^/api/data/[^/]+/?$"), row_max_bytes, "TEXT_MAX_CHARS"),
        BodyRoute(re.compile(r"^/api/models/"), REGISTRY_MAX_BYTES, "a registry change"),
        BodyRoute(re.compile(r"^/admin/"), row_max_bytes, "TEXT_MAX_CHARS, an admin form"),
    )


def limit_web_bodies(app: ASGIApp) -> ASGIApp:
    """`app` behind web's own body limits, as its settings set them (web.asgi, and the bench's
    ceiling, which must pay what web pays)."""
    config = get_settings()
    return limit_bodies(
        app,
        routes=web_body_routes(
            import_max_bytes=config.import_max_bytes,
            json_max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            text_max_chars=config.text_max_chars,
        ),
        timeout_seconds=config.body_timeout_seconds,
        budget=BodyBudget(config.body_budget_bytes),
    )


def route_for(routes: Iterable[BodyRoute], method: str, path: str) -> BodyRoute | None:
    """The route whose cap applies to this request; None: it takes no body."""
    if method not in WRITES:
        return None
    return next((route for route in routes if route.path.match(path)), None)


def limit_bodies(
    app: ASGIApp,
    *,
    routes: Iterable[BodyRoute],
    timeout_seconds: float,
    budget: BodyBudget | None = None,
) -> ASGIApp:
    """Wrap app so that every body is bounded by its route's cap, the body deadline and the
    process's `budget` (bodies held whole; a streamed one is consumed as it comes)."""
    routes = tuple(routes)

    async def guarded(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await app(scope, receive, send)
            return
        route = route_for(routes, scope["method"], scope["path"])
        max_bytes = route.max_bytes if route else BODYLESS_MAX_BYTES
        declared = declared_length(scope)
        if declared is not None and declared > max_bytes:
            await _answer(send, _too_large(scope, route, max_bytes))
            return
        body = BoundedBody(
            receive,
            max_bytes=max_bytes,
            timeout_seconds=timeout_seconds,
            per_read=bool(route and route.streamed),
            budget=None if route and route.streamed else budget,
        )
        started = refused = False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal refused
            try:
                return await body()
            except BodyRefused as refusal:
                if not (started or refused):
                    refused = True
                    error = (
                        _too_large(scope, route, max_bytes)
                        if isinstance(refusal, BodyTooLarge)
                        else _refusal(refusal)
                    )
                    await _answer(send, error)
                return {"type": "http.disconnect"}  # Django (or the import's view) gives up

        async def send_unless_refused(message: dict[str, Any]) -> None:
            nonlocal started
            if not refused:  # the answer was given: a view's own late one is dropped
                started = True
                await send(message)

        try:
            await app(scope, bounded_receive, send_unless_refused)
        finally:
            body.release()

    return guarded


def _too_large(scope: dict[str, Any], route: BodyRoute | None, max_bytes: int) -> ServiceError:
    where = f"{scope['method']} {scope['path']}"
    if route is None:
        return PayloadTooLarge(f"{where} takes no body (at most {max_bytes} bytes).")
    return PayloadTooLarge(
        f"The body of {where} may have at most {max_bytes} bytes ({route.limit}). "
        "Nothing was stored."
    )


def _refusal(refusal: BodyRefused) -> ServiceError:
    if isinstance(refusal, BodyOverBudget):
        error = ServiceError(str(refusal), headers={"Retry-After": "1"})
        error.status, error.code = refusal.status, "server_busy"
    else:
        error = ServiceError(str(refusal))
        error.status, error.code = refusal.status, "request_timeout"
    return error


async def _answer(send: Send, error: ServiceError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        # The rest of the body is never read: the connection cannot carry another request.
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
