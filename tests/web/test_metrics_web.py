"""web's GET /metrics in-process: what an operator scrapes after some traffic.

In one process the default registry is exposed (the multiprocess merge is tested against the
real server pool in tests/algorithm/test_metrics_processes.py); counters keep counting across
tests, so each test compares before and after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import assert_error
from tests.web.conftest import InProcessWeb
from web.edge import observability


@pytest.fixture
def web(web_as: Callable[[str | None], InProcessWeb]) -> InProcessWeb:
    """The API needs a token: a reader's on every request."""
    return web_as("reader")


def labels(request: httpx.Request) -> httpx.Response:
    """An algorithm service with a model (and a job for GET /train/<id>)."""
    if request.method == "GET":
        return httpx.Response(200, json={"job_id": "job-1", "status": "queued"})
    texts = json.loads(request.content)["texts"]
    return httpx.Response(200, json={"labels": ["x"] * len(texts), "model_version": "v1"})


def scrape(
    web: InProcessWeb, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus-client's own parser: {(sample, labels): value}."""
    response = web.ask(labels, "GET", "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


PREDICT = {"route": "/api/predict/", "method": "POST", "status": "200"}


def test_predictions_show_in_the_duration_histogram_by_route_template(web: InProcessWeb) -> None:
    before = scrape(web)
    one = {"method": "POST", "url": "/api/predict/", "json": {"text": "a"}}
    job = {"method": "GET", "url": "/api/train/job-1/"}
    web.send(labels, *[one] * 5, job)
    after = scrape(web)
    count = "http_server_request_duration_seconds_count"
    assert value(after, count, **PREDICT) - value(before, count, **PREDICT) == 5
    job_labels = {"route": "/api/train/{job_id}/", "method": "GET", "status": "200"}
    assert value(after, count, **job_labels) - value(before, count, **job_labels) == 1
    inf = {**PREDICT, "le": "+Inf"}
    assert value(after, "http_server_request_duration_seconds_bucket", **inf) == value(
        after, count, **PREDICT
    )
    assert not any("job-1" in str(key) for key in after), "a raw path became a label"
    calls = "textclf_web_algorithm_calls_total"
    assert value(after, calls, outcome="ok") - value(before, calls, outcome="ok") == 6
    sizes = "textclf_web_coalesced_batch_size_count"
    assert value(after, sizes) - value(before, sizes) == 5  # one call each: they came in turn


def test_calls_to_a_down_algorithm_service_are_counted_as_unavailable(web: InProcessWeb) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    before = scrape(web)
    answer = web.ask(down, "POST", "/api/predict/", json={"texts": ["a"]})
    assert_error(answer, 503, "algorithm_unavailable")
    after = scrape(web)
    calls = "textclf_web_algorithm_calls_total"
    assert (
        value(after, calls, outcome="unavailable") - value(before, calls, outcome="unavailable")
        == 1
    )
    errors = {"route": "/api/predict/", "method": "POST", "status": "503"}
    count = "http_server_request_duration_seconds_count"
    assert value(after, count, **errors) - value(before, count, **errors) == 1


def test_metrics_token_when_set_is_required(
    web_as: Callable[[str | None], InProcessWeb], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = observability.get_settings().model_copy(update={"metrics_token": "s3cret"})
    monkeypatch.setattr(observability, "get_settings", lambda: settings)
    web = web_as(None)  # an API token is not the metrics token
    request = {"method": "GET", "url": "/metrics"}
    anonymous, wrong = web.send(
        labels, request, {**request, "headers": {"Authorization": "Bearer x"}}
    )
    assert_error(anonymous, 401, "not_authenticated")
    assert_error(wrong, 401, "invalid_token")
    for response in (anonymous, wrong):
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
    assert "http_server_request_duration_seconds" in str(scrape(web, Authorization="Bearer s3cret"))


def test_metrics_answers_only_get(web: InProcessWeb) -> None:
    response = web.ask(labels, "POST", "/metrics")
    assert_error(response, 405, "method_not_allowed")
