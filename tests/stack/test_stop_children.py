"""Stopping child processes (core/process.py): one after another, or all at once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.process import spawn, stop_children
from tests.helpers import wait_until

# A child that takes 0.3 s to shut down after SIGTERM, and writes when its stop began and ended.
GRACEFUL = """
import signal, sys, time
from pathlib import Path
log = Path(sys.argv[1])
def stop(*_):
    with log.open("a") as out:
        out.write(f"{sys.argv[2]} signalled\\n")
    time.sleep(0.3)
    with log.open("a") as out:
        out.write(f"{sys.argv[2]} gone\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[3]).touch()
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize(
    ("together", "expected"),
    [
        # Reverse start order, each gone before the next hears of it.
        (False, ["second signalled", "second gone", "first signalled", "first gone"]),
        # Both signalled before either is gone.
        (True, ["signalled", "signalled", "gone", "gone"]),
    ],
)
def test_children_stop_in_reverse_order_or_all_at_once(
    tmp_path: Path, together: bool, expected: list[str]
) -> None:
    log = tmp_path / "stops.log"
    children = []
    for name in ("first", "second"):
        ready = tmp_path / name
        children.append(spawn(name, [sys.executable, "-c", GRACEFUL, str(log), name, str(ready)]))
        wait_until(ready.exists, timeout=10, interval=0.01, what=f"{name} handling SIGTERM")
    stop_children(children, together=together)
    lines = log.read_text().splitlines()
    assert not any(child.running() for child in children)
    if together:
        assert [line.split()[1] for line in lines] == expected
        assert sorted(line.split()[0] for line in lines) == ["first", "first", "second", "second"]
    else:
        assert lines == expected
