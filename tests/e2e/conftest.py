"""Servers as subprocesses, started the way `make run` starts them."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from stack.embedded import free_port
from stack.process import Child, spawn, stop_children

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_live(url: str, child: Child, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.running(), log.read_text()
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never came up:\n{log.read_text()}")


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start `python -m web` or `python -m algorithm` on a free port; returns its base URL."""
    children: list[Child] = []

    def start(package: str, **env: str) -> str:
        port = free_port()
        prefix = package.upper()
        log = tmp_path / f"{package}.log"
        child = spawn(
            package,
            [sys.executable, "-m", package],
            env={**os.environ, f"{prefix}_PORT": str(port), f"{prefix}_WORKERS": "1", **env},
            cwd=REPO_ROOT,
            log_path=log,
        )
        children.append(child)
        url = f"http://127.0.0.1:{port}"
        wait_live(url, child, log)
        return url

    yield start
    stop_children(children)
