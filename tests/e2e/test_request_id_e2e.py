"""One training followed by its request id through web, the algorithm service and the worker.

Real processes as `make run` starts them; web logs JSON, the others text. The worker's own
/metrics then shows the run, its phases and its rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.harness.scratch import free_port
from tests.helpers import ServiceStarter, WorkerStarter, wait_until

pytestmark = pytest.mark.slow


def test_one_request_id_in_every_log_of_a_training(
    start_service: ServiceStarter,
    start_worker: WorkerStarter,
    test_database_url: str,
    redis_db_url: str,
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    web_client: Callable[..., httpx.Client],
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    # Started side by side: web needs only the algorithm service's address.
    worker = start_worker.launch(WORKER_METRICS_PORT=str(metrics_port))
    algorithm = start_service.launch("algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir))
    web = start_service(
        "web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm.url, LOG_FORMAT="json"
    )
    algorithm.wait()
    worker.wait_ready()
    api = web_client(web)  # an admin token: adds rows and starts trainings
    rows = [{"text": text, "label": label} for text, label in fixture_corpus]
    assert api.post("/api/data/", json=rows, timeout=60).status_code == 201

    request_id = "trace-train-0001"
    started = api.post("/api/train/", headers={"X-Request-ID": request_id})
    assert started.status_code == 202 and started.headers["X-Request-ID"] == request_id

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(started.headers["Location"]).json()
        return job if job["status"] in ("succeeded", "failed") else None

    assert wait_until(finished, timeout=120, interval=0.2, what="training")["status"] == "succeeded"

    web_lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines()]
    [access] = [line for line in web_lines if line["request_id"] == request_id]
    assert (access["method"], access["route"], access["status"]) == ("POST", "/api/train/", 202)
    algorithm_lines = (tmp_path / "algorithm.log").read_text().splitlines()
    assert any(f"[{request_id}] queued the training of job" in line for line in algorithm_lines)
    worker_lines = [line for line in worker.log().splitlines() if f"[{request_id}]" in line]
    assert any("training job" in line for line in worker_lines), worker.log()[-3000:]

    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }
    succeeded = (("model", "default"), ("outcome", "succeeded"))
    assert samples[("textclf_training_runs_total", succeeded)] == 1
    for phase in ("read", "fit", "publish"):
        count = ("textclf_training_phase_duration_seconds_count", (("phase", phase),))
        assert samples[count] == 1
    assert samples[("textclf_training_rows_sum", ())] == len(rows)
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404
