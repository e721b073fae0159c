"""Helpers every test module shares: waiting for a condition, checking the error shape, and
starting the service and worker processes a test runs."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from algorithm.ml.signing import SigningKeys
from core.harness.scratch import celery_worker_command, free_port
from core.process import Child, spawn, stop_children

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns something truthy and return that (AssertionError on timeout).

    Exceptions from `probe` propagate at once: a probe that may fail while waiting catches its
    own expected errors and returns None.
    """
    retrying = Retrying(
        retry=retry_if_result(lambda value: not value),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry_error_callback=lambda state: None,
    )
    result = retrying(probe)
    if not result:
        raise AssertionError(f"{what} not reached within {timeout:g} s")
    return result


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an answer in the one error shape (status, `error` code, non-empty `detail`)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header that presents the token `secret`."""
    return {"Authorization": f"Bearer {secret}"}


def wait_live(url: str, child: Child, log: Path, timeout: float = 60) -> None:
    """Wait until the service `child` started answers /health/live (its log on failure)."""

    def live() -> bool:
        assert child.running(), log.read_text()
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(live, timeout=timeout, interval=0.05, what=f"{url} live (log: {log})")


def signing_keys() -> SigningKeys:
    """The keys every worker and algorithm service of the session holds (tests/conftest.py)."""
    return SigningKeys.from_secrets(os.environ["MODEL_SIGNING_KEY"].split(","))


@dataclass(frozen=True)
class StartingService:
    """A service process spawned by `ServiceStarter.launch`, perhaps not answering yet."""

    url: str
    child: Child
    log: Path

    def wait(self) -> str:
        """Its base URL, once it answers /health/live."""
        wait_live(self.url, self.child, self.log)
        return self.url


class ServiceStarter:
    """Starts `python -m web` or `python -m algorithm` on a free port; `stop` ends them all.

    Calling it starts one service and returns its URL once it is live. `launch` returns at once
    (the URL is known before the process answers), so a test starts web and the algorithm
    service side by side: each start is seconds of imports, and web needs only the algorithm
    service's address to start, not an answer from it.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def launch(self, package: str, **env: str) -> StartingService:
        """Spawn `package` with extra environment `env`; `wait()` on the result for it to live."""
        port = free_port()
        prefix = package.upper()
        log = self.log_dir / f"{package}.log"
        if log.exists():  # a second service of the package: a log of its own
            log = self.log_dir / f"{package}-{len(self.children)}.log"
        child = spawn(
            package,
            [sys.executable, "-m", package],
            env={**os.environ, f"{prefix}_PORT": str(port), f"{prefix}_WORKERS": "1", **env},
            cwd=REPO_ROOT,
            log_path=log,
        )
        self.children.append(child)
        return StartingService(url=f"http://127.0.0.1:{port}", child=child, log=log)

    def __call__(self, package: str, **env: str) -> str:
        """Start `package` with extra environment `env`; its base URL once it is live."""
        return self.launch(package, **env).wait()

    def stop(self) -> None:
        """Stop every service it started, all at once (each stop is a graceful shutdown of its
        own; one after another, a test's teardown waited for each in turn)."""
        stop_children(self.children, together=True)


@dataclass
class WorkerProcess:
    """A running `celery -A worker.celery_app worker`."""

    child: Child
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.child.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.child.running():
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            return " ready." in self.log()

        wait_until(ready, timeout=timeout, interval=0.05, what=f"worker ready ({self.log_path})")

    def pool_pids(self) -> list[int]:
        """The pids of the pool processes that run the tasks."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after 15 s."""
        if not self.stopped:
            self.stopped = True
            stop_children([self.child])

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, like a crashed machine."""
        if not self.stopped:
            os.killpg(self.pid, signal.SIGKILL)
            self.child.popen.wait()
            self.stop()  # reaps the rest of the group and closes the log


class WorkerStarter:
    """Starts real Celery workers with a test's environment; `kill_all` ends them.

    Calling it returns a worker once it is ready; `launch` returns at once (the caller waits
    with `wait_ready`), so a test starts its worker beside its web and algorithm services.
    """

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def launch(self, **env_overrides: str) -> WorkerProcess:
        name = f"test-{uuid.uuid4().hex[:8]}"
        log_path = self.log_dir / f"{name}.log"
        child = spawn(
            name,
            celery_worker_command(name),
            env={**self.env, **env_overrides},
            cwd=REPO_ROOT,
            log_path=log_path,
        )
        worker = WorkerProcess(child=child, log_path=log_path)
        self.workers.append(worker)
        return worker

    def __call__(self, **env_overrides: str) -> WorkerProcess:
        worker = self.launch(**env_overrides)
        worker.wait_ready()
        return worker

    def kill_all(self) -> None:
        # Killed, not stopped warmly: a warm shutdown waits for a training the test left running
        # (up to the 15 s SIGKILL deadline), and nothing after the test needs its ending.
        for worker in reversed(self.workers):
            worker.kill()
