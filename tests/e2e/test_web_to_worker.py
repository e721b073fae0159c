"""The whole path over real HTTP: web -> algorithm -> Celery worker -> model -> predictions."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from algorithm.artifacts import load_current_version
from algorithm.ml import TrainedModel, predict_labels, score_labels
from stack.embedded import free_port
from tests.helpers import assert_error, wait_until

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_urls(
    start_service: Callable[..., str],
    start_worker: Callable[..., Any],
    test_database_url: str,
    redis_db_url: str,
    model_dir: Path,
) -> tuple[str, str]:
    start_worker().wait_ready()
    algorithm = start_service(
        "algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir), MODEL_POLL_MS="100"
    )
    web = start_service("web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm)
    return web, algorithm


def wait_for_job(web: str, location: str, timeout: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{web}{location}").json()
        return job if job["status"] in {"succeeded", "failed"} else None

    return wait_until(finished, timeout=timeout, interval=0.2, what=f"job at {location} finished")


def test_a_user_trains_and_predicts_through_web(
    stack_urls: tuple[str, str],
    fixture_corpus: list[tuple[str, str]],
    model_dir: Path,
    transactional_db: Any,
) -> None:
    web, _ = stack_urls
    before = httpx.post(f"{web}/api/predict/", json={"text": "a library for images"})
    assert "train" in assert_error(before, 503, "no_model")["detail"]

    rows = [{"text": text, "label": label} for text, label in fixture_corpus]
    assert httpx.post(f"{web}/api/data/", json=rows, timeout=60).status_code == 201

    started = httpx.post(f"{web}/api/train/")
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location == f"/api/train/{started.json()['job_id']}/"
    job = wait_for_job(web, location)
    assert job["status"] == "succeeded", job
    assert job["model_version"] and job["metrics"]["accuracy"] > 0.5

    texts = [text for text, _ in fixture_corpus[:50]]
    model = load_current_version(model_dir).model
    expected = predict_labels(model, texts)

    def predicted() -> httpx.Response | None:
        single = httpx.post(f"{web}/api/predict/", json={"text": texts[0]})
        return single if single.status_code == 200 else None

    # The algorithm service picks the new version up within its poll interval.
    single = wait_until(predicted, timeout=5, interval=0.1, what="a prediction from the model")
    assert single.json() == {"label": expected[0], "model_version": job["model_version"]}
    batch = httpx.post(f"{web}/api/predict/", json={"texts": texts}).json()
    assert batch == {"labels": expected, "model_version": job["model_version"]}
    assert_top_k_answers_through_web(web, model, texts)
    assert httpx.get(f"{web}/health/ready").json()["checks"] == {
        "database": "ok",
        "algorithm": "ok",
    }

    assert_error(httpx.get(f"{web}/api/train/no-such-job/"), 404, "job_not_found")


def assert_top_k_answers_through_web(web: str, model: TrainedModel, texts: list[str]) -> None:
    """Scores through web equal the reference's; a k above the labels is refused, naming them."""
    expected = score_labels(model, texts, 3)
    single = httpx.post(f"{web}/api/predict/", json={"text": texts[0], "top_k": 3}).json()
    batch = httpx.post(f"{web}/api/predict/", json={"texts": texts, "top_k": 3}).json()
    answered, reference = [single["scores"], *batch["scores"]], [expected[0], *expected]
    for got, want in zip(answered, reference, strict=True):
        assert [item["label"] for item in got] == [label for label, _ in want]
        assert [item["score"] for item in got] == pytest.approx([s for _, s in want], abs=1e-9)
    assert single["label"] == expected[0][0][0]
    assert batch["labels"] == [ranked[0][0] for ranked in expected]
    too_many = httpx.post(f"{web}/api/predict/", json={"text": "x", "top_k": len(model.labels) + 1})
    error = assert_error(too_many, 409, "top_k_above_labels")
    assert f"at most {len(model.labels)}" in error["fields"]["top_k"][0]


def test_train_answers_in_milliseconds_with_100_000_rows(
    stack_urls: tuple[str, str], transactional_db: Any
) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO data (text, label, created_at, updated_at) "
            "SELECT 'package number ' || i || ' does thing ' || (i % 97), 'l' || (i % 5), "
            "now(), now() FROM generate_series(1, 100000) AS i"
        )
    web, _ = stack_urls
    httpx.get(f"{web}/health/ready")  # warm the connections
    started = time.perf_counter()
    response = httpx.post(f"{web}/api/train/")
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
    start_service: Callable[..., str], test_database_url: str
) -> None:
    web = start_service("web", DATABASE_URL=test_database_url, ALGORITHM_URL="http://127.0.0.1:9")
    for body, code in BAD_PREDICT_BODIES:
        if isinstance(body, str | bytes):
            response = httpx.post(f"{web}/api/predict/", content=body,
                                  headers={"Content-Type": "application/json"})  # fmt: skip
        else:
            response = httpx.post(f"{web}/api/predict/", json=body)
        assert_error(response, 400, code)
    assert_error(httpx.post(f"{web}/api/predict/", data={"text": "x"}), 415,
                 "unsupported_media_type")  # fmt: skip
    assert_error(httpx.get(f"{web}/api/predict/"), 405, "method_not_allowed")


def test_algorithm_down_or_silent_gives_503_or_504_quickly(
    start_service: Callable[..., str], test_database_url: str
) -> None:
    down = start_service("web", DATABASE_URL=test_database_url,
                         ALGORITHM_URL=f"http://127.0.0.1:{free_port()}")  # fmt: skip
    started = time.perf_counter()
    response = httpx.post(f"{down}/api/predict/", json={"text": "hello"}, timeout=10)
    assert_error(response, 503, "algorithm_unavailable")
    assert time.perf_counter() - started < 3
    assert_error(httpx.post(f"{down}/api/train/", timeout=10), 503)
    ready = httpx.get(f"{down}/health/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        slow = start_service("web", DATABASE_URL=test_database_url,
                             ALGORITHM_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
                             ALGORITHM_TIMEOUT_SECONDS="1")  # fmt: skip
        started = time.perf_counter()
        response = httpx.post(f"{slow}/api/predict/", json={"text": "hello"}, timeout=10)
        assert_error(response, 504, "algorithm_unavailable")
        assert time.perf_counter() - started < 3
