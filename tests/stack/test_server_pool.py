"""The server pool: one SO_REUSEPORT socket per worker, no silent second instance, no orphans.

The guarantees hold whichever server the workers run (Hypercorn, uvicorn)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.harness.scratch import free_port
from core.pool import SERVERS, pool_command
from tests.helpers import wait_until
from tests.stack.slow_app import ENTERED_MARKER_ENV

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
APP = "loadtests.servers.flask_hello:app"


def start_pool(
    port: int,
    workers: int = 2,
    app: str = APP,
    server: str = "hypercorn",
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), **(extra_env or {})}
    return subprocess.Popen(
        pool_command(app, host="127.0.0.1", port=port, workers=workers, server=server),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_serving(port: int, pool: subprocess.Popen[str], path: str = "/predict") -> httpx.Response:
    """Wait until the pool answers a POST to `path` at all; return the answer."""

    def answer() -> httpx.Response | None:
        assert pool.poll() is None, pool.stdout.read() if pool.stdout else ""
        try:
            return httpx.post(f"http://127.0.0.1:{port}{path}", timeout=1)
        except httpx.HTTPError:
            return None

    return wait_until(answer, timeout=30, interval=0.05, what="pool serving")


def worker_pids(pool_pid: int) -> list[int]:
    children = Path(f"/proc/{pool_pid}/task/{pool_pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(params=SERVERS)
def pool(request: pytest.FixtureRequest) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    process = start_pool(port, server=request.param)
    assert wait_serving(port, process).status_code == 200
    yield port, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)


def test_a_second_pool_on_the_same_port_is_refused(pool: tuple[int, subprocess.Popen[str]]) -> None:
    port, first = pool
    second = start_pool(port)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 2 and "already" in output
    for _ in range(20):  # every answer still comes from the first pool
        assert httpx.post(f"http://127.0.0.1:{port}/predict").status_code == 200
    assert len(worker_pids(first.pid)) == 2


def test_a_foreign_listener_on_the_port_is_refused() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        refused = start_pool(other.getsockname()[1])
        output, _ = refused.communicate(timeout=30)
    assert refused.returncode == 2 and "in use" in output


def test_sigterm_stops_gracefully_and_sigkill_takes_the_workers_down(
    pool: tuple[int, subprocess.Popen[str]],
) -> None:
    port, first = pool
    workers = worker_pids(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # No leftover silently sharing the port.
    wait_until(lambda: not any(alive(pid) for pid in workers), timeout=10, what="workers gone")

    again = start_pool(port)  # the port and its lock are free again
    assert wait_serving(port, again).status_code == 200
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=30)
    assert again.returncode == 0


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_lets_requests_in_flight_finish(server: str, tmp_path: Path) -> None:
    port = free_port()
    entered = tmp_path / "entered"
    pool = start_pool(
        port,
        workers=1,
        app="slow_app:app",
        server=server,
        extra_env={ENTERED_MARKER_ENV: str(entered)},
    )
    url = f"http://127.0.0.1:{port}/slow"
    wait_serving(port, pool, path="/")
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(httpx.get(url, timeout=10)))
    in_flight.start()
    wait_until(entered.exists, timeout=10, interval=0.01, what="the request inside the view")
    pool.send_signal(signal.SIGTERM)
    in_flight.join(timeout=15)
    pool.communicate(timeout=30)
    assert answers and answers[0].status_code == 200 and answers[0].json()["status"] == "finished"
    assert pool.returncode == 0
    with pytest.raises(httpx.ConnectError):  # and nothing serves the port any more
        httpx.get(url, timeout=1)
