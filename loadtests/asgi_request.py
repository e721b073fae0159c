"""One request through an ASGI app in this process, for the in-process cost scripts."""

from __future__ import annotations

import asyncio
from typing import Any


async def one_request(app: Any, scope: dict[str, Any], body: bytes) -> int:
    """Send `body` (whole) to `app` under a copy of `scope`; the answer's status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # the client stays: a disconnect never comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status
