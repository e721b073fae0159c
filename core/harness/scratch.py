"""Scratch resources for the test suite and the benchmarks: free ports, temporary data directories.

No runtime code imports this (an import contract in `make lint` says so).
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def make_scratch_dir(prefix: str, *, parent: Path | None = None) -> Path:
    """A new temporary directory (ours) where `start_postgres` may keep its data, also as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)  # the PostgreSQL system user may pass through, not list it
    return path


def celery_worker_command(node: str) -> list[str]:
    """A Celery worker of the training task named `node`, quiet towards other workers (no
    gossip, mingle or heartbeat), as the tests and the benchmarks start it."""
    return [
        *(sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"),
        *("--pool", "prefork", "--loglevel", "INFO", "-n", f"{node}@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
