"""Servers as subprocesses, started the way `make run` starts them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from stack.embedded import free_port
from stack.process import Child, spawn, stop_children
from tests.helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_live(url: str, child: Child, log: Path, timeout: float = 60) -> None:
    def live() -> bool:
        assert child.running(), log.read_text()
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(live, timeout=timeout, interval=0.1, what=f"{url} live (log: {log})")


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
