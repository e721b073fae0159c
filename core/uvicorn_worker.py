"""One pool worker served by uvicorn (uvloop, httptools), with the pool's guarantees.

The pool's socket, lifespan, graceful stop and parent-death signal are the same as with
Hypercorn (core/pool.py). Two guarantees Hypercorn's socket wrapper gave need another home,
since uvloop accepts connections itself: the per-worker connection cap and the header deadline
live in the HTTP protocol. A connection over the cap hears the same 503 as under Hypercorn, once
its request arrives (answering before it would reset the answer); a request header must be
whole within HEADER_TIMEOUT_SECONDS of the connection's start or its last answer, or the
connection is closed (uvicorn's own keep-alive timer only covers idle connections).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server

from core.settings import CommonSettings


class PoolHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the pool's connection cap and header deadline."""

    max_connections = 1024
    header_timeout = 5.0
    turned_away_answer = b""  # core.pool's 503 in the error shape

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_deadline: asyncio.TimerHandle | None = None
        self.turned_away = len(self.connections) >= self.max_connections
        if self.turned_away:
            self.transport = transport
            self.header_deadline = self.loop.call_later(self.header_timeout, transport.close)
            return
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self.turned_away:  # the request came: the 503, then close
            if not self.transport.is_closing():
                self.transport.write(self.turned_away_answer)
                self.transport.close()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self.turned_away:
            return
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self.header_deadline = self.loop.call_later(self.header_timeout, self._header_too_late)

    def _disarm_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _header_too_late(self) -> None:
        self.header_deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def serve_uvicorn_worker(
    app: Any, sock: socket.socket, *, graceful_seconds: float, turned_away: bytes
) -> None:
    """Serve `app` on `sock` until SIGTERM/SIGINT (uvicorn's own handlers: a graceful stop)."""
    common = CommonSettings()
    PoolHttpProtocol.turned_away_answer = turned_away
    PoolHttpProtocol.max_connections = common.max_connections_per_worker
    PoolHttpProtocol.header_timeout = common.header_timeout_seconds
    config = Config(
        app,
        loop="uvloop",
        http=PoolHttpProtocol,
        lifespan="on",
        # The apps log one access line per request themselves; uvicorn's own messages go
        # through the root logger, configured by the pool.
        access_log=False,
        log_config=None,
        timeout_keep_alive=int(max(1, common.header_timeout_seconds)),
        timeout_graceful_shutdown=int(max(1, graceful_seconds)),
        backlog=2048,
        server_header=False,
        date_header=True,
    )
    Server(config).run(sockets=[sock])
