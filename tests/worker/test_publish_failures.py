"""Publishing that fails half-way: a full model volume fails the job cleanly and the previous
model keeps serving; a `current` switch that died half-way never stops the next one."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from algorithm.ml import artifacts
from algorithm.ml.training import fit_model
from algorithm.ml.tuning import LINEARSVC_DEFAULTS
from tests.helpers import signing_keys

Job = dict[str, Any]
FILLER = "filler"


@pytest.fixture
def small_model_volume(model_dir: Path) -> Iterator[Path]:
    """model_dir as a real 2 MiB filesystem (tmpfs), unmounted after the test's workers stop."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(model_dir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    yield model_dir
    subprocess.run(["umount", "--lazy", str(model_dir)], check=True)


def fill_all_but(volume: Path, free_bytes: int) -> None:
    """Write a file that takes every byte of the volume, then give back `free_bytes`."""
    with (volume / FILLER).open("wb") as filler:
        chunk = b"\0" * 65536
        try:
            while True:
                filler.write(chunk)
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        size = filler.tell()
    os.truncate(volume / FILLER, max(0, size - free_bytes))


def registry_state(database_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every version and every alias in the registry."""
    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT version FROM model_version ORDER BY version").fetchall()
        aliases = conn.execute("SELECT name, version_id FROM model_alias ORDER BY name").fetchall()
    return versions, aliases


@pytest.mark.slow
def test_a_full_model_volume_fails_the_job_cleanly_and_the_previous_model_keeps_serving(
    small_model_volume: Path,
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    test_database_url: str,
) -> None:
    volume = small_model_volume
    insert_rows(fixture_corpus[::9])  # 100 rows: short trainings, versions of a few dozen KiB
    start_worker(PROMOTION_POLICY="auto")
    first = wait_for_job(request_training()["job_id"])
    assert first["status"] == "succeeded", first["error"]
    version_bytes = sum(f.stat().st_size for f in (volume / first["model_version"]).iterdir())
    before = registry_state(test_database_url)
    # Room for part of a version: some of its files are written before the disk is full.
    fill_all_but(volume, version_bytes // 2)

    failed = wait_for_job(request_training()["job_id"])

    assert failed["status"] == "failed"
    assert "no space left on the model volume" in failed["error"], failed["error"]
    assert "previous model keeps serving" in failed["error"]
    assert failed["model_version"] is None
    # Nothing half-written left, nothing new visible, the registry as it was.
    assert sorted(p.name for p in volume.iterdir()) == sorted(
        ["current", FILLER, first["model_version"]]
    )
    assert (
        artifacts.load_current_version(volume, signing_keys=signing_keys()).version
        == first["model_version"]
    )
    assert registry_state(test_database_url) == before
    with psycopg.connect(test_database_url) as conn:
        run = conn.execute(
            "SELECT status, error FROM training_run WHERE id = %s", (failed["job_id"],)
        ).fetchone()
    assert run == ("failed", failed["error"])

    (volume / FILLER).unlink()  # space again: the next training publishes and switches
    again = wait_for_job(request_training()["job_id"])
    assert again["status"] == "succeeded", again["error"]
    assert (
        artifacts.load_current_version(volume, signing_keys=signing_keys()).version
        == again["model_version"]
    )


def test_a_switch_that_died_half_way_never_stops_the_next_and_its_link_goes(
    tmp_path: Path, fixture_corpus: list[tuple[str, str]]
) -> None:
    rows = fixture_corpus[::30]
    model = fit_model([t for t, _ in rows], [lb for _, lb in rows], plan=LINEARSVC_DEFAULTS)
    published = [
        artifacts.publish_model_version(
            tmp_path,
            model,
            metrics={},
            fingerprint={},
            rows=len(rows),
            retention=None,
            signing_keys=signing_keys(),
        )["version"]
        for _ in range(2)
    ]
    old, new = published
    assert artifacts.current_version_name(tmp_path) == new
    # Switches to `old` that died between making their temporary link and renaming it over
    # `current`: one long ago, one just now (as if it were still running).
    stale = tmp_path / f"{artifacts.LINK_TEMP_PREFIX}{old}"
    fresh = tmp_path / f"{artifacts.LINK_TEMP_PREFIX}{old}-0123abcd"
    for link in (stale, fresh):
        os.symlink(old, link)
    long_ago = time.time() - artifacts.STALE_SWITCH_LINK_SECONDS - 1
    os.utime(stale, (long_ago, long_ago), follow_symlinks=False)

    artifacts.switch_current(tmp_path, old)  # the retried switch

    assert artifacts.load_current_version(tmp_path, signing_keys=signing_keys()).version == old
    assert not os.path.lexists(stale) and os.path.lexists(fresh)
