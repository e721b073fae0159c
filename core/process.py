"""Child processes that cannot outlive their parent.

Every child gets a parent-death signal (Linux `PR_SET_PDEATHSIG`), so a supervisor killed with
SIGKILL still takes its children down, and its own process group, so a signal meant for the group
(Ctrl-C in a terminal) reaches the supervisor first and it stops children in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None


class StopSignals:
    """SIGINT and SIGTERM set `requested` instead of raising: the loop stops children in order."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request)

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    user: str | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start `argv` in its own process group, dying with this process."""
    parent_pid = os.getpid()

    def before_exec() -> None:
        # Runs after any uid switch (which would clear the death signal), right before exec.
        set_parent_death_signal(stop_signal)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)

    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed in stop_children
    popen = subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        user=user,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=before_exec,
    )
    return Child(name=name, popen=popen, stop_signal=stop_signal, log=log)


def stop_children(
    children: Sequence[Child], *, timeout: float = 15.0, together: bool = False
) -> None:
    """Stop children: polite signal first, SIGKILL after `timeout`.

    In reverse start order, each stopped before the next is signalled (a child may depend on
    one started before it); with `together`, independent children are all signalled at once
    and share one `timeout`, so stopping them takes as long as the slowest, not the sum.
    """
    waves = [list(reversed(children))] if together else [[child] for child in reversed(children)]
    for wave in waves:
        for child in wave:
            if child.running():
                # The leader only: it stops its own helpers (postgres backends, pool workers).
                child.popen.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout
        for child in wave:
            while child.running() and time.monotonic() < deadline:
                time.sleep(0.02)
            if child.running():
                _signal_group(child, signal.SIGKILL)
                child.popen.wait()
            # Reap anything left in the child's group (e.g. worker processes of a pool).
            _signal_group(child, signal.SIGKILL)
            if child.log:
                child.log.close()


def _signal_group(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)
