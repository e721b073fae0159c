"""The algorithm service's /v2 routes (Open Inference Protocol): a real Hypercorn server, real
Redis, one server for the module (the tests only read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from algorithm.ml import artifacts
from algorithm.ml.training import TrainedModel, predict_labels, score_labels
from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from tests.algorithm.conftest import LiveServer
from tests.helpers import signing_keys

INFER = "/v2/models/default/infer"


@pytest.fixture(scope="module")
def served(
    model: TrainedModel,
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
    service_headers: dict[str, str],
) -> Iterator[tuple[httpx.Client, str]]:
    """A client of a live service serving `model`, and the model's version."""
    model_root = tmp_path_factory.mktemp("models")
    manifest = artifacts.publish_model_version(
        model_root, model, metrics={}, fingerprint={"rows": 0}, rows=0, signing_keys=signing_keys()
    )
    settings = AlgorithmSettings(model_dir=model_root, redis_url=module_redis_url)
    server = LiveServer(create_asgi_app(settings))
    with httpx.Client(base_url=server.url, headers=service_headers, timeout=10) as client:
        yield client, str(manifest["version"])
    server.stop()


def text_input(texts: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "text", "datatype": "BYTES", "shape": shape or [len(texts)], "data": texts}


def assert_protocol_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


def test_labels_equal_the_native_predict_and_name_the_concrete_version(
    served: tuple[httpx.Client, str], model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    client, version = served
    texts = [r["text"] for r in corpus[:50]]
    native = client.post("/predict", json={"texts": texts}).json()
    for path in (
        INFER,
        "/v2/models/default/versions/champion/infer",
        f"/v2/models/default/versions/{version}/infer",
    ):
        body = {
            "id": "r-1",
            "parameters": {"trace": "x"},
            "inputs": [text_input(texts)],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
        answer = client.post(path, json=body)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["model_name"] == "default" and result["model_version"] == version
        assert result["id"] == "r-1" and result["parameters"] == {"trace": "x"}
        (label,) = result["outputs"]
        assert label == {
            "name": "label",
            "datatype": "BYTES",
            "shape": [50],
            "data": native["labels"],
        }
    assert native["labels"] == predict_labels(model, texts)


def test_an_n_by_1_input_nested_or_flat_answers_in_that_shape(
    served: tuple[httpx.Client, str], corpus: list[dict[str, str]]
) -> None:
    client, _ = served
    texts = [r["text"] for r in corpus[:3]]
    flat = client.post(INFER, json={"inputs": [text_input(texts, [3, 1])]}).json()
    nested = client.post(INFER, json={"inputs": [text_input([[t] for t in texts], [3, 1])]}).json()
    assert flat["outputs"] == nested["outputs"]
    label, scores = flat["outputs"]
    assert label["shape"] == [3, 1] and len(label["data"]) == 3
    assert scores["datatype"] == "FP32" and scores["shape"][0] == 3
    assert len(scores["data"]) == 3 * scores["shape"][1]


def test_classification_extension_answers_score_index_label_strings(
    served: tuple[httpx.Client, str], model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    client, _ = served
    texts = [r["text"] for r in corpus[:4]]
    body = {
        "inputs": [text_input(texts)],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
    }
    (scores,) = client.post(INFER, json=body).json()["outputs"]
    assert scores["datatype"] == "BYTES" and scores["shape"] == [4, 3]
    classes = [str(label) for label in model.classifier.classes_]
    expected = score_labels(model, texts, 3)
    for row, best in enumerate(expected):
        cells = [cell.split(":", 2) for cell in scores["data"][row * 3 : row * 3 + 3]]
        assert [label for _, _, label in cells] == [label for label, _ in best]
        assert [classes[int(index)] for _, index, _ in cells] == [label for label, _ in best]
        assert [float(score) for score, _, _ in cells] == pytest.approx(
            [s for _, s in best], abs=1e-6
        )


def test_metadata_health_and_readiness(
    served: tuple[httpx.Client, str], model: TrainedModel
) -> None:
    client, version = served
    assert client.get("/v2").json()["extensions"] == ["classification"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    metadata = client.get("/v2/models/default").json()
    assert metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"][1]["shape"] == [-1, len(model.classifier.classes_)]
    pinned = client.get(f"/v2/models/default/versions/{version}/ready")
    assert pinned.json() == {"name": "default", "version": version, "ready": True}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v2/models/other/infer", {"inputs": [text_input(["a"])]}, 404, "model_not_found"),
        (
            "/v2/models/default/versions/previous/infer",
            {"inputs": [text_input(["a"])]},
            404,
            "version_not_loaded",
        ),
        (
            "/v2/models/default/versions/challenger/infer",
            {"inputs": [text_input(["a"])]},
            404,
            "version_not_loaded",
        ),
        (INFER, {"inputs": [text_input(["a", "b"], [3])]}, 400, "invalid_request"),
        (INFER, {"inputs": [{**text_input(["a"]), "datatype": "FP32"}]}, 400, "invalid_request"),
        (INFER, {"inputs": [text_input(["  "])]}, 400, "validation_error"),
        (INFER, {"inputs": []}, 400, "validation_error"),
        (
            INFER,
            {"inputs": [text_input(["a"])], "outputs": [{"name": "x"}]},
            400,
            "invalid_request",
        ),
        (
            INFER,
            {
                "inputs": [text_input(["a"])],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 999}}],
            },
            400,
            "validation_error",
        ),
    ],
)
def test_bad_requests_answer_in_the_protocols_error_shape(
    served: tuple[httpx.Client, str], path: str, body: dict[str, Any], status: int, code: str
) -> None:
    client, _ = served
    assert_protocol_error(client.post(path, json=body), status, code)


def test_too_many_texts_and_no_token_are_refused_in_the_protocols_shape(
    served: tuple[httpx.Client, str],
) -> None:
    client, _ = served
    too_many = client.post(INFER, json={"inputs": [text_input(["a"] * 1001)]})
    assert "at most 1000 texts" in assert_protocol_error(too_many, 400, "validation_error")
    anonymous = httpx.post(f"{client.base_url}{INFER}", json={"inputs": [text_input(["a"])]})
    assert_protocol_error(anonymous, 401, "unauthorized")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert_protocol_error(client.post(INFER, content=b"{"), 400, "invalid_json")


def test_before_the_first_model_the_service_is_not_ready_and_infer_is_503(
    tmp_path: Path, module_redis_url: str, service_headers: dict[str, str]
) -> None:
    settings = AlgorithmSettings(
        model_dir=tmp_path / "empty", redis_url=module_redis_url, model_check_ms=50
    )
    server = LiveServer(create_asgi_app(settings))
    try:
        with httpx.Client(base_url=server.url, headers=service_headers, timeout=10) as client:
            ready = client.get("/v2/health/ready")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            answer = client.post(INFER, json={"inputs": [text_input(["a text"])]})
            assert_protocol_error(answer, 503, "no_model")
            assert_protocol_error(client.get("/v2/models/default/ready"), 503, "no_model")
    finally:
        server.stop()
