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


def test_ready_is_503_without_internals_when_the_database_is_unreachable(
    transactional_db: None, algorithm_up: None
) -> None:
    """Anonymous callers learn which check failed, never why (no exception text, no address)."""
    original = connection.settings_dict
    options = original["OPTIONS"]
    unreachable = {
        **original,
        "PORT": 1,  # nothing listens there
        "OPTIONS": {**options, "pool": {**options["pool"], "timeout": 0.5}},
    }
    connection.close()
    connection.close_pool()  # the pool keeps the address it was opened with
    connection.settings_dict = unreachable
    try:
        ready = APIClient().get("/health/ready")
    finally:
        connection.close()
        connection.close_pool()
        connection.settings_dict = original
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "failed", "algorithm": "ok"},
    }
