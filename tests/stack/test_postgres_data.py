"""Where `make run` as root keeps PostgreSQL's data when $VAR_DIR sits in a private directory
(as /root): outside $VAR_DIR, found from it (a symlink), and gone with it.

The functions are called directly on a shared root of the test's own; no server is started
(test_make_run.py starts one in a private directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from core.harness.postgres_user import postgres_data_dir, sweep_orphans
from core.harness.scratch import make_scratch_dir

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root keeps PostgreSQL's data outside $VAR_DIR"
)


@pytest.fixture
def shared_root(state_dir: Path) -> Path:
    """Stands for /var/lib/textclf (made on the first claim)."""
    return make_scratch_dir("shared-", parent=state_dir) / "textclf"


@pytest.fixture
def private(state_dir: Path) -> Path:
    """A directory only root may enter, as /root is."""
    return Path(tempfile.mkdtemp(prefix="private-", dir=state_dir))


def _stand_in_for_a_running_postgres() -> subprocess.Popen[bytes]:
    """A process whose command line reads `postgres`, returned once it does.

    Popen returns while the kernel may still be setting up the new program's arguments, and a
    sweep that read an empty command line then would take the server for stopped.
    """
    server = subprocess.Popen(["postgres", "60"], executable=shutil.which("sleep"))
    cmdline = Path(f"/proc/{server.pid}/cmdline")
    deadline = time.monotonic() + 10
    while not cmdline.read_bytes().startswith(b"postgres\0"):
        assert time.monotonic() < deadline, "the stand-in never showed its command line"
        time.sleep(0.01)
    return server


def test_the_data_is_found_from_var_dir_also_after_a_move(private: Path, shared_root: Path) -> None:
    var_dir = private / "checkout" / "var"

    data_dir = postgres_data_dir(var_dir, root=shared_root)

    assert data_dir.parent.parent == shared_root
    assert (var_dir / "postgres").resolve() == data_dir
    assert postgres_data_dir(var_dir, root=shared_root) == data_dir  # the next start
    assert (private.stat().st_mode & 0o777) == 0o700  # nothing opened up
    (private / "checkout").rename(private / "moved")
    assert postgres_data_dir(private / "moved" / "var", root=shared_root) == data_dir
    assert (data_dir.parent / "owner").read_text().strip() == str(private / "moved" / "var")


def test_the_next_start_removes_the_data_of_a_var_dir_that_is_gone(
    private: Path, shared_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = postgres_data_dir(private / "gone" / "var", root=shared_root)
    (gone / "PG_VERSION").write_text("18\n")
    remade = postgres_data_dir(private / "remade" / "var", root=shared_root)
    running = postgres_data_dir(private / "running" / "var", root=shared_root)
    kept = postgres_data_dir(private / "kept" / "var", root=shared_root)
    server = _stand_in_for_a_running_postgres()
    try:
        (running / "postmaster.pid").write_text(f"{server.pid}\n{running}\n")
        shutil.rmtree(private / "gone")
        shutil.rmtree(private / "running")  # while its server still runs
        shutil.rmtree(private / "remade" / "var")
        (private / "remade" / "var").mkdir()  # made again: empty, its data starts afresh

        new = postgres_data_dir(private / "new" / "var", root=shared_root)

        assert not gone.parent.exists()
        assert not remade.parent.exists()
        assert running.exists() and kept.exists() and new.exists()
        output = capsys.readouterr().out
        assert f"removed {gone.parent}: PostgreSQL data no longer used by {private}/gone/var" in (
            output
        )
    finally:
        server.kill()
        server.wait()
    # Once its server has stopped, the next sweep takes it; the last one takes the root too.
    assert sweep_orphans(shared_root) == [(running.parent, private / "running" / "var")]
    shutil.rmtree(private)
    assert len(sweep_orphans(shared_root)) == 2
    assert not shared_root.exists()
