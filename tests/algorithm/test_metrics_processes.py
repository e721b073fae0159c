"""The algorithm service's /metrics with two real server processes (`python -m algorithm`).

A scrape is answered by whichever process the kernel picks; it must count the requests of both.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from algorithm.ml.artifacts import publish_model_version
from core.process import spawn, stop_children
from tests.algorithm.registry_helpers import fit_quickly
from tests.helpers import signing_keys, wait_live, wait_until

pytestmark = pytest.mark.slow
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """GET /metrics parsed by prometheus-client's parser: {(sample, labels): value}."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def served(samples: Samples) -> dict[str, str]:
    """{pid: version} of every live process's served-version series set to 1."""
    return {
        dict(labels)["pid"]: dict(labels)["version"]
        for (name, labels), number in samples.items()
        if name == "textclf_model_served_info" and number == 1
    }


def both_serving(url: str) -> Samples | None:
    """A scrape once both processes report a served version."""
    samples = scrape(url)
    return samples if len(served(samples)) == 2 else None


def metrics_dir(url: str) -> Path:
    return Path(os.environ["VAR_DIR"]) / "metrics" / f"algorithm-{urlsplit(url).port}"


def publish(model_dir: Path, corpus: list[tuple[str, str]], *, rows: int) -> str:
    model = fit_quickly(corpus, slice(rows))  # a plain fit: only its serving is counted
    manifest = publish_model_version(
        model_dir,
        model,
        metrics={},
        fingerprint={"rows": rows},
        rows=rows,
        signing_keys=signing_keys(),
    )
    return str(manifest["version"])


@pytest.fixture
def environment(redis_db_url: str, model_dir: Path) -> dict[str, str]:
    """The algorithm service's settings in these tests: two processes, a quick model poll."""
    return {
        "REDIS_URL": redis_db_url,
        "MODEL_DIR": str(model_dir),
        "ALGORITHM_WORKERS": "2",
        "MODEL_POLL_MS": "100",
    }


@pytest.fixture
def start_algorithm(
    start_service: Callable[..., str], environment: dict[str, str]
) -> Callable[..., str]:
    return lambda **env: start_service("algorithm", **environment, **env)


def test_predictions_over_two_processes_all_count_and_the_swap_shows(
    start_algorithm: Callable[..., str],
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    tmp_path: Path,
    service_headers: dict[str, str],
) -> None:
    first = publish(model_dir, fixture_corpus, rows=600)
    url = start_algorithm(LOG_FORMAT="json", ALGORITHM_ACCESS_LOG="true")
    predictions = 80
    for number in range(predictions):  # a new connection each: the kernel spreads them
        headers = {**service_headers, "X-Request-ID": f"metrics-{number}"}
        answer = httpx.post(f"{url}/predict", json={"text": f"library {number}"}, headers=headers)
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == f"metrics-{number}"
    batch = {"texts": ["a parser", "a font", "a game"]}
    assert httpx.post(f"{url}/predict", json=batch, headers=service_headers).status_code == 200
    too_many = {"text": "a parser", "top_k": 10_000}  # refused: not a prediction
    assert httpx.post(f"{url}/predict", json=too_many, headers=service_headers).status_code == 400

    for _ in range(3):  # whichever process answers the scrape counts both
        samples = scrape(url)
        assert value(samples, "textclf_predictions_total") == predictions + 1
        assert value(samples, "textclf_predicted_texts_total") == predictions + 3
        labels = {"route": "/predict", "method": "POST", "status": "200"}
        assert value(samples, "http_server_request_duration_seconds_count", **labels) == (
            predictions + 1
        )
        # Every model call's texts; the refused one never reached the batcher (a top_k over
        # PREDICT_MAX_TOP_K is refused while the body is read).
        assert value(samples, "textclf_predict_batch_size_sum") == predictions + 3
    per_process = [
        value(_samples(MultiProcessCollector.merge([path])), "textclf_predictions_total")
        for path in glob.glob(str(metrics_dir(url) / "counter_*.db"))
    ]
    assert len([n for n in per_process if n > 0]) == 2, per_process  # both served some
    assert sum(per_process) == predictions + 1
    assert set(served(samples).values()) == {first} and len(served(samples)) == 2

    second = publish(model_dir, fixture_corpus, rows=500)

    def serving_second() -> Samples | None:
        samples = scrape(url)
        return samples if set(served(samples).values()) == {second} else None

    swapped = wait_until(serving_second, timeout=10, what="both processes serve the new version")
    assert len(served(swapped)) == 2
    assert value(swapped, "textclf_model_reloads_total", outcome="success") == 4  # 2 each

    log = [json.loads(line) for line in (tmp_path / "algorithm.log").read_text().splitlines()]
    [access] = [entry for entry in log if entry["request_id"] == "metrics-7"]
    assert access["route"] == "/predict" and access["status"] == 200
    assert {"time", "level", "logger", "message", "method", "duration_ms"} <= set(access)


def _samples(metrics: Any) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in metrics
        for sample in metric.samples
    }


def test_a_killed_process_leaves_no_live_series_and_a_restart_counts_from_zero(
    start_algorithm: Callable[..., str],
    environment: dict[str, str],
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    tmp_path: Path,
    service_headers: dict[str, str],
) -> None:
    version = publish(model_dir, fixture_corpus, rows=500)
    url = start_algorithm()
    for number in range(20):
        answer = httpx.post(f"{url}/predict", json={"text": f"t{number}"}, headers=service_headers)
        assert answer.status_code == 200
    directory = metrics_dir(url)
    live_files = sorted(glob.glob(str(directory / "gauge_live*_*.db")))
    pids = {int(Path(path).stem.rsplit("_", 1)[1]) for path in live_files}
    assert len(pids) == 2

    os.kill(min(pids), signal.SIGKILL)  # the pool sees it die, stops, and marks both dead
    lock = Path(f"/tmp/textclf-serve-127.0.0.1-{urlsplit(url).port}.lock")
    wait_until(lambda: not lock.exists(), timeout=30, what="the pool stopped")
    assert glob.glob(str(directory / "gauge_live*")) == []

    # The same service on the same port again (as a supervisor would restart it).
    log = tmp_path / "restarted.log"
    env = {**os.environ, **environment, "ALGORITHM_PORT": str(urlsplit(url).port)}
    restarted = spawn("algorithm", [sys.executable, "-m", "algorithm"], env=env, log_path=log)
    try:
        wait_live(url, restarted, log)
        samples = wait_until(lambda: both_serving(url), timeout=30, what="both processes serve")
    finally:
        stop_children([restarted])
    assert value(samples, "textclf_predictions_total") == 0  # the dead run's files are gone
    assert set(served(samples).values()) == {version} and len(served(samples)) == 2
    assert not set(served(samples)) & {str(pid) for pid in pids}
