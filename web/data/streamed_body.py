"""Django's ASGI handler, with the import's body read from the connection as the view asks for it.

Django's ASGIHandler reads a whole request body into a temporary file before any view runs, so
an import used to wait for its whole upload before checking and copying the first row. For
`POST /api/data/import` this handler gives the request a file-like over the ASGI `receive`
channel instead: the view reads a MiB, checks and copies it while the next one arrives. Every
other step is Django's own and the same for every request (middleware: token, role, rate
limit, request id, metrics; DRF's view and error shape). A refusal before the view reads
(401, 403, 429, 415) is answered without the body ever being uploaded into the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.handlers.asgi import ASGIHandler

from web.edge.body_limits import IMPORT_PATH
from web.errors import BadRequest

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyIncompleteError(BadRequest):
    """The client went away (or the size guard cut the body off) before the body's end."""

    code = "body_incomplete"
    default_detail = "The connection closed before the end of the body: nothing was imported."


class ReceivedBody:
    """The request body as a file whose reads (from the view's thread) pull it off the channel."""

    def __init__(self, receive: Receive, loop: asyncio.AbstractEventLoop) -> None:
        self._receive = receive
        self._loop = loop
        self._buffer = bytearray()
        self._more = True
        self.aborted = False
        self.finished = asyncio.Event()  # the body is read to its end, or the client left

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes (all the rest if size < 0); b"" at the body's end."""
        if self._more and (size < 0 or len(self._buffer) < size):
            if _running_loop() is self._loop:
                raise RuntimeError("The import body is read from a sync view's thread only.")
            asyncio.run_coroutine_threadsafe(self._fill(size), self._loop).result()
        if size < 0 or size >= len(self._buffer):
            chunk = bytes(self._buffer)
            self._buffer.clear()
        else:
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
        return chunk

    async def _fill(self, size: int) -> None:
        while self._more and (size < 0 or len(self._buffer) < size):
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._more, self.aborted = False, True
                self.finished.set()
                raise BodyIncompleteError()
            self._buffer += message.get("body", b"")
            self._more = message.get("more_body", False)
        if not self._more:
            self.finished.set()

    async def receive_after_body(self) -> dict[str, Any]:
        """What Django's disconnect listener waits for: nothing until the view has read the body.

        Once the client has left mid-body, the view is left to fail and roll back on its own.
        """
        await self.finished.wait()
        if self.aborted:
            await asyncio.Event().wait()  # never returns; Django cancels it when the view ends
        return await self._receive()

    def close(self) -> None:
        self._buffer.clear()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class StreamingImportHandler(ASGIHandler):
    """ASGIHandler that streams the body of an import to its view, and spools every other one."""

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or not IMPORT_PATH.match(scope["path"]):
            await super().handle(scope, receive, send)
            return
        body = ReceivedBody(receive, asyncio.get_running_loop())

        async def send_unless_aborted(message: dict[str, Any]) -> None:
            # A client that left hears nothing; after the size guard's 413, nothing more is sent.
            if not body.aborted:
                await send(message)

        await super().handle(scope, _Channel(body), send_unless_aborted)

    async def read_body(self, receive: Any) -> Any:
        if isinstance(receive, _Channel):
            return receive.body
        return await super().read_body(receive)


class _Channel:
    """The `receive` Django's handler gets for an import: the body is read through `body`."""

    def __init__(self, body: ReceivedBody) -> None:
        self.body = body

    async def __call__(self) -> dict[str, Any]:
        return await self.body.receive_after_body()
