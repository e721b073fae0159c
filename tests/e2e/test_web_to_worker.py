"""The whole path over real HTTP: web -> algorithm -> Celery worker -> model -> predictions."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from algorithm.ml.artifacts import load_current_version
from algorithm.ml.training import TrainedModel, predict_labels, score_labels
from tests.helpers import (
    ServiceStarter,
    WorkerStarter,
    assert_error,
    signing_keys,
    wait_until,
)

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


def start_web_and_algorithm(
    start_service: ServiceStarter, test_database_url: str, redis_db_url: str, model_dir: Path
) -> tuple[str, str]:
    """web and the algorithm service, started side by side; their URLs once both are live."""
    algorithm = start_service.launch(
        "algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir), MODEL_POLL_MS="100"
    )
    web = start_service("web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm.url)
    return web, algorithm.wait()


@pytest.fixture
def web_and_algorithm_urls(
    start_service: ServiceStarter, test_database_url: str, redis_db_url: str, model_dir: Path
) -> tuple[str, str]:
    return start_web_and_algorithm(start_service, test_database_url, redis_db_url, model_dir)


@pytest.fixture
def stack_urls(
    start_worker: WorkerStarter,
    start_service: ServiceStarter,
    test_database_url: str,
    redis_db_url: str,
    model_dir: Path,
) -> tuple[str, str]:
    """web, the algorithm service and a worker, all three started side by side."""
    worker = start_worker.launch()
    urls = start_web_and_algorithm(start_service, test_database_url, redis_db_url, model_dir)
    worker.wait_ready()
    return urls


def wait_for_job(web: httpx.Client, location: str, timeout: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = web.get(location).json()
        return job if job["status"] in {"succeeded", "failed"} else None

    return wait_until(finished, timeout=timeout, interval=0.2, what=f"job at {location} finished")


def test_a_user_trains_and_predicts_through_web(
    stack_urls: tuple[str, str],
    fixture_corpus: list[tuple[str, str]],
    model_dir: Path,
    web_client: Callable[..., httpx.Client],
) -> None:
    web = web_client(stack_urls[0])
    before = web.post("/api/predict/", json={"text": "a library for images"})
    assert "train" in assert_error(before, 503, "no_model")["detail"]

    rows = [{"text": text, "label": label} for text, label in fixture_corpus]
    assert web.post("/api/data/", json=rows, timeout=60).status_code == 201

    started = web.post("/api/train/")
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location == f"/api/train/{started.json()['job_id']}/"
    job = wait_for_job(web, location)
    assert job["status"] == "succeeded", job
    assert job["model_version"] and job["metrics"]["accuracy"] > 0.5

    texts = [text for text, _ in fixture_corpus[:50]]
    model = load_current_version(model_dir, signing_keys=signing_keys()).model
    expected = predict_labels(model, texts)

    def predicted() -> httpx.Response | None:
        single = web.post("/api/predict/", json={"text": texts[0]})
        return single if single.status_code == 200 else None

    # The algorithm service picks the new version up within its poll interval.
    single = wait_until(predicted, timeout=5, interval=0.1, what="a prediction from the model")
    assert single.json() == {"label": expected[0], "model_version": job["model_version"]}
    batch = web.post("/api/predict/", json={"texts": texts}).json()
    assert batch == {"labels": expected, "model_version": job["model_version"]}
    assert_top_k_answers_through_web(web, model, texts)
    assert web.get("/health/ready").json()["checks"] == {
        "database": "ok",
        "algorithm": "ok",
    }

    assert_error(web.get("/api/train/no-such-job/"), 404, "job_not_found")


def assert_top_k_answers_through_web(
    web: httpx.Client, model: TrainedModel, texts: list[str]
) -> None:
    """Scores through web equal the reference's; a k above the labels is refused, naming them."""
    expected = score_labels(model, texts, 3)
    single = web.post("/api/predict/", json={"text": texts[0], "top_k": 3}).json()
    batch = web.post("/api/predict/", json={"texts": texts, "top_k": 3}).json()
    answered, reference = [single["scores"], *batch["scores"]], [expected[0], *expected]
    for got, want in zip(answered, reference, strict=True):
        assert [item["label"] for item in got] == [label for label, _ in want]
        assert [item["score"] for item in got] == pytest.approx([s for _, s in want], abs=1e-9)
    assert single["label"] == expected[0][0][0]
    assert batch["labels"] == [ranked[0][0] for ranked in expected]
    too_many = web.post("/api/predict/", json={"text": "x", "top_k": len(model.labels) + 1})
    error = assert_error(too_many, 409, "top_k_above_labels")
    assert f"at most {len(model.labels)}" in error["fields"]["top_k"][0]


def test_train_answers_in_milliseconds_with_100_000_rows(
    web_and_algorithm_urls: tuple[str, str], web_client: Callable[..., httpx.Client]
) -> None:
    """Queuing a training reads no row: no worker needed (one would train 100 000 rows here)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO data (text, label, created_at, updated_at) "
            "SELECT 'package number ' || i || ' does thing ' || (i % 97), 'l' || (i % 5), "
            "now(), now() FROM generate_series(1, 100000) AS i"
        )
    web = web_client(web_and_algorithm_urls[0])
    web.get("/health/ready")  # warm the connections
    started = time.perf_counter()
    response = web.post("/api/train/")
    elapsed = time.perf_counter() - started
    assert response.status_code == 202
    assert elapsed < 0.5, f"POST /api/train/ took {elapsed * 1000:.0f} ms"


BAD_PREDICT_BODIES = [
    ({"text": ""}, "validation_error"),
    ({"text": 3}, "validation_error"),
    ({"text": ["a"]}, "validation_error"),
    ({"texts": []}, "validation_error"),
    ({"texts": ["a"] * 1001}, "validation_error"),
    ({"text": "a", "extra": 1}, "validation_error"),
    ({"text": "x" * 100_001}, "validation_error"),
    ({"text": "a", "top_k": 0}, "validation_error"),
    ({"texts": ["a"], "top_k": True}, "validation_error"),
    ({"text": "a", "top_k": None}, "validation_error"),
    ({"text": "a", "top_k": "3"}, "validation_error"),
    ("[1, 2]", "validation_error"),
    ('{"text": ', "invalid_json"),
    (b'{"text": "\xff"}', "invalid_json"),
    ('{"text": "a lone \\ud800 surrogate"}', "validation_error"),
    ('{"texts": ["fine", "\\udfff"]}', "validation_error"),
]


def test_bad_predict_input_through_web_gets_4xx(
    web_without_algorithm: str, web_client: Callable[..., httpx.Client]
) -> None:
    web = web_client(web_without_algorithm)
    for body, code in BAD_PREDICT_BODIES:
        if isinstance(body, str | bytes):
            response = web.post(
                "/api/predict/", content=body, headers={"Content-Type": "application/json"}
            )
        else:
            response = web.post("/api/predict/", json=body)
        assert_error(response, 400, code)
    assert_error(web.post("/api/predict/", data={"text": "x"}), 415, "unsupported_media_type")
    assert_error(web.get("/api/predict/"), 405, "method_not_allowed")


def test_algorithm_down_or_silent_gives_503_or_504_quickly(
    start_service: Callable[..., str],
    web_without_algorithm: str,
    test_database_url: str,
    web_client: Callable[..., httpx.Client],
) -> None:
    down = web_client(web_without_algorithm)
    started = time.perf_counter()
    response = down.post("/api/predict/", json={"text": "hello"}, timeout=10)
    assert_error(response, 503, "algorithm_unavailable")
    assert time.perf_counter() - started < 3
    assert_error(down.post("/api/train/", timeout=10), 503)
    ready = down.get("/health/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        slow = web_client(
            start_service(
                "web",
                DATABASE_URL=test_database_url,
                ALGORITHM_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
                ALGORITHM_TIMEOUT_SECONDS="1",
            )
        )
        started = time.perf_counter()
        response = slow.post("/api/predict/", json={"text": "hello"}, timeout=10)
        assert_error(response, 504, "algorithm_unavailable")
        assert time.perf_counter() - started < 3
