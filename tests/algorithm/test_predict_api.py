"""The algorithm service's HTTP API, through Flask's client against the real app and Redis."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from algorithm import artifacts
from algorithm.app import create_app
from algorithm.config import AlgorithmSettings
from algorithm.ml import TrainedModel, predict_labels, sha256_of, train_model

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian_descriptions.jsonl"


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


@pytest.fixture(scope="module")
def model(corpus: list[dict[str, str]]) -> TrainedModel:
    return train_model([r["text"] for r in corpus], [r["label"] for r in corpus])[0]


def publish(model_root: Path, model: TrainedModel) -> str:
    manifest = artifacts.publish_model_version(
        model_root, model, metrics={}, fingerprint={"rows": 0}, rows=0
    )
    return str(manifest["version"])


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def make_client(model_root: Path) -> Iterator[Any]:
    apps = []

    def make(**overrides: Any) -> FlaskClient:
        settings = AlgorithmSettings(model_dir=model_root, model_poll_ms=50, **overrides)
        app = create_app(settings)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["textclf"].close()


@pytest.fixture
def client(make_client: Any, model_root: Path, model: TrainedModel) -> FlaskClient:
    publish(model_root, model)
    return make_client()  # type: ignore[no-any-return]


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert body["error"] == code and body["detail"]
    return dict(body)


def test_single_and_batch_predictions_equal_the_ml_module(
    client: FlaskClient, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:200]] + ["a text with no known words zzqx", "Python"]
    expected = predict_labels(model, texts)
    single = [client.post("/predict", json={"text": t}).get_json() for t in texts]
    assert [answer["label"] for answer in single] == expected
    assert len({answer["model_version"] for answer in single}) == 1
    batch = client.post("/predict", json={"texts": texts}).get_json()
    assert batch["labels"] == expected
    assert batch["model_version"] == single[0]["model_version"]


def test_concurrent_requests_get_their_own_answers(
    client: FlaskClient, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:400]]
    expected = dict(zip(texts, predict_labels(model, texts), strict=True))

    def ask(text: str) -> tuple[str, str]:
        return text, client.post("/predict", json={"text": text}).get_json()["label"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, texts))
    assert all(label == expected[text] for text, label in answers)


def test_no_model_is_503_then_hot_reload_without_restart(
    make_client: Any, model_root: Path, model: TrainedModel
) -> None:
    client = make_client()
    response = client.post("/predict", json={"text": "hello"})
    assert "train" in error_of(response, 503, "no_model")["detail"]
    assert client.get("/health/ready").get_json()["model_version"] is None

    version = publish(model_root, model)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        answer = client.post("/predict", json={"text": "hello"})
        if answer.status_code == 200:
            break
        time.sleep(0.02)
    assert answer.status_code == 200 and answer.get_json()["model_version"] == version
    assert client.get("/health/ready").get_json()["model_version"] == version


@pytest.mark.parametrize("damage", ["bad_checksum", "truncated_pickle"])
def test_corrupt_new_version_leaves_the_old_one_serving(
    client: FlaskClient, model_root: Path, damage: str
) -> None:
    old = client.post("/predict", json={"text": "x"}).get_json()["model_version"]
    bad = artifacts.new_version_id()
    shutil.copytree(model_root / old, model_root / bad)
    manifest = json.loads((model_root / bad / "manifest.json").read_text())
    manifest["version"] = bad
    (model_root / bad / "manifest.json").write_text(json.dumps(manifest))
    pickle_path = model_root / bad / "model.pickle"
    data = pickle_path.read_bytes()
    if damage == "bad_checksum":
        pickle_path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        pickle_path.write_bytes(data[: len(data) // 2])
        manifest["sha256"]["model.pickle"] = sha256_of(data[: len(data) // 2])
        (model_root / bad / "manifest.json").write_text(json.dumps(manifest))
    artifacts.switch_current(model_root, bad)

    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not client.get("/health/ready").get_json()["model_error"]:
        time.sleep(0.02)
    health = client.get("/health/ready").get_json()
    assert health["model_version"] == old and bad in health["model_error"]
    assert client.post("/predict", json={"text": "x"}).get_json()["model_version"] == old


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": 5}, "text"),
        ({"text": None, "texts": None}, "text"),
        ({"text": ["a list"]}, "text"),
        ({"texts": "a string"}, "texts"),
        ({"texts": []}, "texts"),
        ({"texts": ["ok", 3]}, "texts"),
        ({"texts": ["ok", ""]}, "texts"),
        ({"texts": ["t"] * 1001}, "texts"),
        ({"text": "t" * 100_001}, "text"),
        ({"text": "a", "texts": ["b"]}, "text"),
        ({"text": "a", "lang": "en"}, "lang"),
        (["a", "b"], "body"),
        ("just a string", "body"),
    ],
)
def test_bad_predict_bodies_get_400_with_field_errors(
    client: FlaskClient, body: Any, field: str
) -> None:
    error = error_of(client.post("/predict", json=body), 400, "validation_error")
    assert field in error["fields"]


def test_malformed_bodies(client: FlaskClient) -> None:
    send = client.post
    error_of(send("/predict", data=b'{"text": ', content_type="application/json"), 400,
             "invalid_json")  # fmt: skip
    error_of(send("/predict", data=b'{"text": "\xff\xfe"}', content_type="application/json"), 400,
             "invalid_json")  # fmt: skip
    error_of(send("/predict", data=b"text=hi", content_type="text/plain"), 415,
             "unsupported_media_type")  # fmt: skip
    error_of(send("/predict", data=b"{}"), 415, "unsupported_media_type")
    huge = json.dumps({"texts": ["word " * 10_000] * 1000}).encode()
    error_of(send("/predict", data=huge, content_type="application/json"), 413,
             "request_entity_too_large")  # fmt: skip


def test_unknown_urls_and_methods_answer_json(client: FlaskClient) -> None:
    error_of(client.get("/nothing"), 404, "not_found")
    error_of(client.get("/predict"), 405, "method_not_allowed")


def test_train_queues_a_job_and_reports_it(client: FlaskClient) -> None:
    response = client.post("/train")
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "queued" and response.headers["Location"] == f"/train/{job['job_id']}"
    assert client.post("/train").get_json()["job_id"] == job["job_id"]  # still queued: same job
    assert client.get(f"/train/{job['job_id']}").get_json()["status"] == "queued"
    error_of(client.get("/train/no-such-job"), 404, "job_not_found")
    error_of(client.post("/train", json={"rows": 5}), 400, "invalid_request")


def test_openapi_and_docs(client: FlaskClient) -> None:
    schema = client.get("/openapi.json").get_json()
    validate(schema)
    assert {"/predict", "/train", "/train/{job_id}", "/health/live", "/health/ready"} <= set(
        schema["paths"]
    )
    assert "swagger-ui" in client.get("/docs").get_data(as_text=True)
    with client.get("/docs/static/swagger-ui-bundle.js") as script:
        assert script.status_code == 200 and b"SwaggerUIBundle" in script.get_data()
