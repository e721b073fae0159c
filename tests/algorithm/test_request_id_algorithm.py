"""The algorithm service in-process: web's request id and requester reach the job, /metrics' token.

The real ASGI app on a real Hypercorn server; the queue is replaced by a function that notes
what the real one would send (the Celery header is tested end to end in tests/e2e).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from core.jobs import JobStore, Requester
from core.logs import REQUEST_ID
from tests.helpers import assert_error, bearer
from web.proxy.algorithm_client import requester_headers


@pytest.fixture
def queued() -> list[str | None]:
    return []


@pytest.fixture
def service(
    serve_app: Callable[[Any], httpx.Client],
    job_store: JobStore,
    redis_db_url: str,
    tmp_path: Path,
    queued: list[str | None],
) -> Callable[..., httpx.Client]:
    def start(**overrides: Any) -> httpx.Client:
        settings = AlgorithmSettings(redis_url=redis_db_url, model_dir=tmp_path, **overrides)
        enqueue = lambda job_id: queued.append(REQUEST_ID.get())  # noqa: E731
        return serve_app(create_asgi_app(settings, job_store=job_store, enqueue=enqueue))

    return start


def test_the_request_id_reaches_the_queue_and_comes_back(
    service: Callable[..., httpx.Client], queued: list[str | None]
) -> None:
    client = service()
    answer = client.post("/train", headers={"X-Request-ID": "from-web-1"})
    assert answer.status_code == 202 and answer.headers["X-Request-ID"] == "from-web-1"
    assert queued == ["from-web-1"]
    missing = client.get("/train/no-such-job", headers={"X-Request-ID": "from-web-2"})
    assert_error(missing, 404, "job_not_found")
    assert missing.headers["X-Request-ID"] == "from-web-2"
    assert len(client.get("/health/live").headers["X-Request-ID"]) == 32


def test_who_asked_web_is_kept_with_the_job_as_web_sends_it(
    service: Callable[..., httpx.Client], job_store: JobStore
) -> None:
    client = service()
    actor = "token:Zoë's laptop"  # token names may hold spaces and any letter
    answer = client.post("/train", headers={**requester_headers(actor), "X-Request-ID": "r-1"})
    assert answer.status_code == 202
    job_id = answer.json()["job_id"]
    assert job_store.requester(job_id) == Requester(requested_by=actor, request_id="r-1")
    assert "requested_by" not in client.get(f"/train/{job_id}").json()

    long_name = requester_headers("token:" + "é" * 100)["X-Requested-By"]
    assert len(long_name) <= 200 and long_name.endswith("%C3%A9")  # whole characters only
    for bad in (b"", b"token: ci", "token:é".encode(), b"x" * 201):  # not encoded, too long
        refused = client.post("/train", headers=[(b"X-Requested-By", bad)])
        assert "X-Requested-By" in assert_error(refused, 400, "invalid_request")["detail"]


def test_duration_is_labelled_by_route_template(service: Callable[..., httpx.Client]) -> None:
    client = service()
    client.get("/train/job-abc")
    # Refused by the token check before its view: still timed under its route, not "unmatched".
    assert httpx.get(client.base_url.join("/train/job-def")).status_code == 401
    families = text_string_to_metric_families(client.get("/metrics").text)
    samples = [
        sample.labels
        for family in families
        if family.name == "http_server_request_duration_seconds"
        for sample in family.samples
    ]
    routes = {labels["route"] for labels in samples}
    assert "/train/<job_id>" in routes and not any("job-" in route for route in routes)
    assert {"route": "/train/<job_id>", "method": "GET", "status": "401"} in [
        {name: labels[name] for name in ("route", "method", "status")} for labels in samples
    ]


def test_metrics_token_when_set_is_required(service: Callable[..., httpx.Client]) -> None:
    client = service(metrics_token="s3cret")  # its client sends the service token
    anonymous = httpx.get(client.base_url.join("/metrics"))  # no token at all
    assert_error(anonymous, 401, "unauthorized")
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="textclf-algorithm"'
    for refused in (client.get("/metrics"), client.get("/metrics", headers=bearer("wrong"))):
        assert_error(refused, 401, "unauthorized")
        challenge = refused.headers["WWW-Authenticate"]
        assert challenge == 'Bearer realm="textclf-algorithm", error="invalid_token"'
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and "textclf_predictions_total" in allowed.text
