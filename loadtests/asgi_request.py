"""One request through an ASGI app in this process, for the in-process cost scripts."""

from __future__ import annotations

import asyncio
from typing import Any


def http_scope(
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    *,
    body: bytes | None = None,
) -> dict[str, Any]:
    """An HTTP/1.1 request's ASGI scope for `target` (a path, with a query if any) from
    127.0.0.1; a `body` adds its content type (JSON) and length to `headers`."""
    path, _, query = target.partition("?")
    if body is not None:
        headers = [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


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
