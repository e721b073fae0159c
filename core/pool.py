"""Run an ASGI/WSGI app in N server processes, each with its own SO_REUSEPORT socket.

The server is Hypercorn, or for ASGI apps uvicorn on uvloop and httptools (`--server uvicorn`,
core/uvicorn_worker.py), which keeps the same guarantees.

One shared listening socket (`hypercorn -w N`) lets the kernel hand most keep-alive connections
to one worker now and then; one socket per process lets the kernel spread connections evenly.
SO_REUSEPORT would also let a leftover server silently share the port, so the pool refuses to
start while anything listens on it, holds a per-port lock while it runs, and its workers die
with it (parent-death signal). SIGTERM/SIGINT stop every worker gracefully.

The pool also owns its workers' metric files (see core/metrics.py): it gives them a directory of
their own, emptied at start, and marks each worker dead there when it exits, so live gauges of
a dead process disappear. Hypercorn has no child-exit hook; the pool does not need one.

Slow and hostile clients: each worker holds at most MAX_CONNECTIONS_PER_WORKER connections
(`ConnectionCappedSocket`), and a request header must be whole within HEADER_TIMEOUT_SECONDS of
the connection's start or its last answer; bodies are bounded by the apps (core/request_body.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from core.logs import configure_logging, write_logs_in_background
from core.metrics import MULTIPROC_DIR_ENV, mark_process_dead, prepare_metrics_dir
from core.process import Child, StopSignals, set_parent_death_signal, spawn, stop_children
from core.settings import CommonSettings

SERVERS = ("hypercorn", "uvicorn")


class PortInUseError(RuntimeError):
    pass


def _lock_port(host: str, port: int) -> Any:
    path = Path(tempfile.gettempdir()) / f"textclf-serve-{host}-{port}.lock"
    handle = open(path, "w")  # noqa: SIM115 - held open for the life of the pool
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PortInUseError(f"another server pool already runs on {host}:{port}") from None
    return handle


def _release_port(handle: Any) -> None:
    Path(handle.name).unlink(missing_ok=True)  # while still locked: nobody else owns it
    handle.close()


def _refuse_if_listening(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PortInUseError(
                f"{host}:{port} is already in use; stop the other server first"
            ) from None


def pool_command(
    app_path: str,
    *,
    host: str,
    port: int,
    workers: int | None = None,
    graceful_seconds: float | None = None,
    server: str = "hypercorn",
) -> list[str]:
    """The command line that serves `app_path` ("module:attribute") on host:port with a pool.

    Unset options take the defaults of `python -m core.pool`.
    """
    argv = [sys.executable, "-m", "core.pool", app_path, "--host", host, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if graceful_seconds is not None:
        argv += ["--graceful-seconds", str(graceful_seconds)]
    if server != "hypercorn":
        argv += ["--server", server]
    return argv


def serve_pool(
    app_path: str,
    *,
    host: str,
    port: int,
    workers: int,
    graceful_seconds: float = 10.0,
    server: str = "hypercorn",
) -> int:
    """Serve `app_path` in this process's pool until stopped; the exit code for the shell."""
    try:
        return run_pool(
            app_path,
            host=host,
            port=port,
            workers=workers,
            graceful_seconds=graceful_seconds,
            server=server,
        )
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def metrics_dir_for(app_path: str, port: int) -> Path:
    """The metric files of the pool serving `app_path` on `port` ($VAR_DIR/metrics/web-8000).

    The port makes it the pool's own: the port lock keeps a second pool off it.
    """
    service = app_path.split(".", 1)[0].split(":", 1)[0]
    return CommonSettings().metrics_root / f"{service}-{port}"


def run_pool(
    app_path: str,
    *,
    host: str,
    port: int,
    workers: int,
    graceful_seconds: float,
    server: str = "hypercorn",
) -> int:
    """Start `workers` processes serving `app_path`; return when they have all stopped."""
    lock = _lock_port(host, port)
    try:
        _refuse_if_listening(host, port)
    except PortInUseError:
        _release_port(lock)
        raise
    argv = [
        *pool_command(
            app_path, host=host, port=port, graceful_seconds=graceful_seconds, server=server
        ),
        "--worker",
    ]
    metrics_dir = prepare_metrics_dir(metrics_dir_for(app_path, port))
    started_dir = tempfile.mkdtemp(prefix="textclf-pool-started-")
    env = {
        **os.environ,
        MULTIPROC_DIR_ENV: str(metrics_dir),
        STARTED_DIR_ENV: started_dir,
        WORKERS_ENV: str(workers),
    }
    children: list[Child] = []
    stop = StopSignals()
    try:
        children = [spawn(f"worker-{i}", argv, env=env) for i in range(workers)]
        while not stop.requested and all(child.running() for child in children):
            time.sleep(0.2)
        exit_code = 0 if stop.requested else 1
    finally:
        stop_children(children, timeout=graceful_seconds + 5)
        for child in children:
            mark_process_dead(child.pid, metrics_dir)
        _release_port(lock)
        shutil.rmtree(started_dir, ignore_errors=True)
    return exit_code


def _import_app(app_path: str) -> Any:
    module_name, _, attribute = app_path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    return target() if attribute.endswith("()") else target


class ConnectionCappedSocket(socket.socket):
    """A listening socket whose `accept` turns away connections beyond `max_connections` open.

    Hypercorn has no connection limit; asyncio's server accepts through this object's `accept`,
    so the cap sits there: a connection over it gets a 503 in the error shape and is closed at
    once, before the server spends a task on it. An accepted connection counts until the
    server closes it; Hypercorn closes one its client closed only when the connection's idle
    timer runs out, so it counts for up to HEADER_TIMEOUT_SECONDS longer.
    """

    def __init__(self, family: int, type: int, *, max_connections: int) -> None:  # noqa: A002
        super().__init__(family, type)
        self.max_connections = max_connections
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def open_connections(self) -> int:
        self._open = weakref.WeakSet(conn for conn in self._open if conn.fileno() != -1)
        return len(self._open)

    def accept(self) -> tuple[socket.socket, Any]:
        while True:  # until one is under the cap, or none waits (BlockingIOError)
            conn, address = super().accept()
            if len(self._open) < self.max_connections or (
                self.open_connections() < self.max_connections
            ):
                self._open.add(conn)
                return conn, address
            _turn_away(conn)


TOO_MANY_CONNECTIONS = json.dumps(
    {
        "error": "too_many_connections",
        "detail": "This server process holds as many connections as it may; retry shortly.",
    }
).encode()
TURNED_AWAY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(TOO_MANY_CONNECTIONS), TOO_MANY_CONNECTIONS)
)


def _turn_away(conn: socket.socket) -> None:
    conn.setblocking(False)
    with contextlib.suppress(OSError):
        conn.recv(65536)  # what already came: closing on unread bytes would reset the answer
    with contextlib.suppress(OSError):
        conn.send(TURNED_AWAY)
    conn.close()


def _listening_socket(host: str, port: int, *, max_connections: int) -> ConnectionCappedSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = ConnectionCappedSocket(family, socket.SOCK_STREAM, max_connections=max_connections)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    # Bound, not listening: asyncio's server listens once the app's lifespan start-up is done.
    # Until then a connection is refused (and a client tries another replica) instead of
    # waiting in the backlog of a process still importing or loading its model.
    sock.setblocking(False)
    return sock


STARTED_DIR_ENV = "TEXTCLF_POOL_STARTED_DIR"
WORKERS_ENV = "TEXTCLF_POOL_WORKERS"


def _listen_together(app: Any) -> Any:
    """`app`, whose lifespan start-up also waits until every worker of the pool has started.

    A worker's socket listens once its start-up is done (its connections are not held in the
    backlog of a process still loading); the workers start listening together, or a client's
    long-lived connections would all go to whichever worker was first. Each worker marks itself
    started in the pool's directory and waits (at most a minute) for its siblings' marks.
    """
    started_dir, workers = os.environ.get(STARTED_DIR_ENV), int(os.environ.get(WORKERS_ENV, "1"))
    from hypercorn.utils import is_asgi

    if not started_dir or workers < 2 or not is_asgi(app):  # a WSGI app has no lifespan
        return app

    async def all_started() -> None:
        Path(started_dir, str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(started_dir)) < workers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def app_listening_together(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def send_when_all_started(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                await all_started()
            await send(message)

        return await app(scope, receive, send_when_all_started)

    return app_listening_together


def serve_worker(
    app_path: str, *, host: str, port: int, graceful_seconds: float, server: str = "hypercorn"
) -> None:
    """One pool worker: own socket, one event loop, graceful stop on SIGTERM/SIGINT."""
    set_parent_death_signal(signal.SIGTERM)
    # Before the app is imported: an app that configures logging itself (Django) may redo it.
    # Lines are written off the event loop (core/log_writer.py).
    write_logs_in_background()
    common = CommonSettings()
    configure_logging(common.log_format)
    sock = _listening_socket(host, port, max_connections=common.max_connections_per_worker)
    if server == "uvicorn":
        from core.uvicorn_worker import serve_uvicorn_worker

        serve_uvicorn_worker(
            _listen_together(_import_app(app_path)),
            sock,
            graceful_seconds=graceful_seconds,
            turned_away=TURNED_AWAY,
        )
        return
    _serve_hypercorn_worker(app_path, sock, graceful_seconds=graceful_seconds)


def _serve_hypercorn_worker(
    app_path: str, sock: ConnectionCappedSocket, *, graceful_seconds: float
) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.config import Config, Sockets
    from hypercorn.utils import wrap_app

    common = CommonSettings()
    config = Config()
    config.backlog = 2048
    # One clock in Hypercorn: from a connection's start or its last answer to a whole request
    # header. It cuts off both an idle keep-alive connection and a header sent half-way.
    # (The body's deadline is the apps': core/request_body.py. Hypercorn's read_timeout is
    # left unset: it would also cut a client that waits, silent, for a long answer.)
    config.keep_alive_timeout = common.header_timeout_seconds
    config.keep_alive_max_requests = 1_000_000
    config.graceful_timeout = graceful_seconds
    # The apps log one access line per request themselves (with the request id); Hypercorn's
    # own messages go through the root logger, in the same format.
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    app = wrap_app(_listen_together(_import_app(app_path)), config.wsgi_max_body_size, None)

    async def main() -> None:
        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shutdown.set)
        # Our own socket object, not one Hypercorn makes from its descriptor: it holds the cap.
        sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        await worker_serve(app, config, sockets=sockets, shutdown_trigger=shutdown.wait)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("app", help="module:attribute of the ASGI or WSGI app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--graceful-seconds", type=float, default=10.0)
    parser.add_argument("--server", choices=SERVERS, default="hypercorn")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        serve_worker(
            args.app,
            host=args.host,
            port=args.port,
            graceful_seconds=args.graceful_seconds,
            server=args.server,
        )
        return 0
    return serve_pool(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        graceful_seconds=args.graceful_seconds,
        server=args.server,
    )


if __name__ == "__main__":
    sys.exit(main())
