"""Health probes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.db import connection
from rest_framework.test import APIClient

from web.proxy import algorithm_client


@pytest.fixture
def algorithm_up() -> Iterator[None]:
    """An algorithm service that answers its liveness probe (mocked at the network edge)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "ok"}))
    algorithm_client.install(
        algorithm_client.AlgorithmClient(
            "http://algorithm.test", timeout=1, connect_retries=0, transport=transport
        )
    )
    yield
    algorithm_client.install(None)


def test_live_and_ready(api: APIClient, algorithm_up: None) -> None:
    assert api.get("/health/live").json() == {"status": "ok"}
    ready = api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_ready_is_503_when_the_database_is_unreachable(api: APIClient, algorithm_up: None) -> None:
    connection.close()
    original = dict(connection.settings_dict)
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        ready = api.get("/health/ready")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"].startswith("error")
