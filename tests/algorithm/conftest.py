"""Serve an algorithm ASGI app on a real Hypercorn server, in a thread of the test process."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from algorithm.ml.training import TrainedModel
from core.harness.scratch import free_port

# The two-process setup of the tests that follow the registry's champion.
from tests.algorithm.registry_helpers import (  # noqa: F401 (fixtures, found here by pytest)
    registry_redis,
    serve_replicas,
    versions,
)
from tests.helpers import wait_until


class LiveServer:
    """Hypercorn serving `app` on 127.0.0.1 until `stop()`; lifespan included."""

    def __init__(self, app: Any) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 5
        self._thread = threading.Thread(
            target=self._loop.run_until_complete,
            args=(serve(app, config, shutdown_trigger=self._stopped.wait),),
            daemon=True,
        )
        self._thread.start()
        wait_until(self._answers, timeout=10, interval=0.02, what=f"test server on {self.url}")

    def _answers(self) -> bool:
        if not self._thread.is_alive():
            raise RuntimeError("the test server stopped while starting")
        try:
            httpx.get(self.url, timeout=1)  # any answer: it is up
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=15)
        self._loop.close()


@pytest.fixture
def serve_app(service_headers: dict[str, str]) -> Iterator[Callable[[Any], httpx.Client]]:
    """Start a server for an ASGI app; returns an httpx client bound to it, sending the token."""
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []

    def start(app: Any) -> httpx.Client:
        server = LiveServer(app)
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=10, headers=service_headers)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


DESCRIPTIONS = Path(__file__).parent.parent / "fixtures" / "debian_descriptions.jsonl"


# The labelled Debian descriptions and one model trained on them, once for every module that
# serves them (predict, the inference protocol); a module with a corpus of its own (test_ml,
# test_artifacts) defines `corpus` / `model` itself, which pytest prefers to these.
@pytest.fixture(scope="session")
def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in DESCRIPTIONS.read_text().splitlines()]


@pytest.fixture(scope="session")
def model(fixture_model: TrainedModel) -> TrainedModel:
    """The session's model of the same file (tests/conftest.py), trained once."""
    return fixture_model
