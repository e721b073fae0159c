"""Static files (the Swagger UI's scripts and styles) served as ASGI, without a thread hop.

WhiteNoise does the work that matters: it indexes the files once at start-up, picks the
pre-compressed variant the client accepts, answers conditional and range requests and sets the
cache headers. Its Django middleware is sync-only, and a sync middleware would cost every async
view (predictions included) a thread hop, so web/asgi.py sends only `/static/` paths here and
this module turns WhiteNoise's answer into ASGI messages.

The files come from STATIC_ROOT when `collectstatic` filled it (the image does at build time),
otherwise from the installed apps' own static folders through Django's finders (`make run`,
tests): nothing to collect by hand, nothing written at start-up, no race between processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware

from web.edge.middleware import SECURITY_HEADERS

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BLOCK_SIZE = 256 * 1024
EXTRA_HEADERS = [
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
]


def static_files_app(fallback: ASGIApp) -> ASGIApp:
    """An ASGI app serving the indexed static files; anything else goes to `fallback`."""
    collected = Path(settings.STATIC_ROOT).is_dir()
    index = WhiteNoiseMiddleware(
        settings=SimpleNamespace(
            DEBUG=settings.DEBUG,
            STATIC_URL=settings.STATIC_URL,
            FORCE_SCRIPT_NAME=settings.FORCE_SCRIPT_NAME,
            STATIC_ROOT=settings.STATIC_ROOT if collected else None,
            WHITENOISE_USE_FINDERS=not collected,
            WHITENOISE_AUTOREFRESH=False,  # index once, in debug too: `files` is all we look up
        )
    )

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        static_file = index.files.get(scope["path"])
        if static_file is None or scope["method"] not in ("GET", "HEAD"):
            await fallback(scope, receive, send)
            return
        response = static_file.get_response(scope["method"], _wsgi_style_headers(scope))
        await send(
            {
                "type": "http.response.start",
                "status": int(response.status),
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers]
                + EXTRA_HEADERS,
            }
        )
        if response.file is None:
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            while block := await asyncio.to_thread(response.file.read, BLOCK_SIZE):
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.file.close()

    return serve


def _wsgi_style_headers(scope: Scope) -> dict[str, str]:
    """Request headers named as WhiteNoise reads them (HTTP_IF_NONE_MATCH, HTTP_RANGE...)."""
    return {
        "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
        for name, value in scope["headers"]
    }
