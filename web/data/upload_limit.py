"""An ASGI guard that refuses an import body over IMPORT_MAX_BYTES before Django stores it.

The import's body is read by its view as it arrives (web/data/streamed_body.py). This guard
answers 413 at once when Content-Length is too large, before the body is sent, and cuts a
chunked body off as soon as it passes the limit (the view then sees the body end early, rolls
back, and its own answer is dropped), so an oversized upload is never imported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

IMPORT_PATH = re.compile(r"^/api/data/import/?$")


def limit_import_body(app: ASGIApp, *, max_bytes: int) -> ASGIApp:
    """Wrap app so that import bodies over max_bytes get a 413 in the error shape."""

    async def guarded(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not IMPORT_PATH.match(scope["path"]):
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > max_bytes:
            await _send_too_large(send, max_bytes)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] == "http.request" and received > max_bytes:
                await _send_too_large(send, max_bytes)
                return {"type": "http.disconnect"}
            return message

        await app(scope, counting_receive, send)

    return guarded


async def _send_too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps(
        {
            "error": "payload_too_large",
            "detail": f"An import body may have at most {max_bytes} bytes (IMPORT_MAX_BYTES); "
            "split the file. Nothing was imported.",
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
