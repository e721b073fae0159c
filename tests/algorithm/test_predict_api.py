"""The algorithm service's HTTP API: the real ASGI app on a real Hypercorn server, real Redis."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from algorithm.ml import artifacts
from algorithm.ml.artifacts import sha256_of
from algorithm.ml.training import TrainedModel, predict_labels, score_labels
from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from core.harness.scratch import free_port
from tests.helpers import assert_error, signing_keys, wait_until


def publish(model_root: Path, model: TrainedModel) -> str:
    manifest = artifacts.publish_model_version(
        model_root, model, metrics={}, fingerprint={"rows": 0}, rows=0, signing_keys=signing_keys()
    )
    return str(manifest["version"])


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def make_client(model_root: Path, serve_app: Callable[[Any], httpx.Client]) -> Any:
    def make(**overrides: Any) -> httpx.Client:
        settings = AlgorithmSettings(model_dir=model_root, model_poll_ms=50, **overrides)
        return serve_app(create_asgi_app(settings))

    return make


@pytest.fixture
def client(make_client: Any, model_root: Path, model: TrainedModel) -> httpx.Client:
    publish(model_root, model)
    return make_client()


def test_single_and_batch_predictions_equal_the_ml_module(
    client: httpx.Client, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:200]] + ["a text with no known words zzqx", "Python"]
    expected = predict_labels(model, texts)
    single = [client.post("/predict", json={"text": t}).json() for t in texts]
    assert [answer["label"] for answer in single] == expected
    assert len({answer["model_version"] for answer in single}) == 1
    batch = client.post("/predict", json={"texts": texts}).json()
    assert batch["labels"] == expected
    assert batch["model_version"] == single[0]["model_version"]


def test_concurrent_requests_get_their_own_answers(
    client: httpx.Client, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:400]]
    expected = dict(zip(texts, predict_labels(model, texts), strict=True))
    # One client per thread, as 32 callers would have. One sync client shared by more threads
    # than its keep-alive limit (20) can close, as surplus, a connection it has just handed to a
    # waiting thread (an open race in httpcore's pool): the likely cause of the one ReadError
    # [Errno 9] this test showed with a shared client.
    callers = threading.local()
    clients: list[httpx.Client] = []

    def ask(text: str) -> tuple[str, str]:
        if not hasattr(callers, "client"):
            callers.client = httpx.Client(
                base_url=client.base_url, timeout=client.timeout, headers=client.headers
            )
            clients.append(callers.client)
        return text, callers.client.post("/predict", json={"text": text}).json()["label"]

    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(ask, texts))
    finally:
        for caller in clients:
            caller.close()
    assert all(label == expected[text] for text, label in answers)


def assert_scores_equal_the_reference(answered: list[list[dict[str, Any]]], expected: Any) -> None:
    """Each answer's scores: the reference's labels in its order, scores equal to 1e-9."""
    assert len(answered) == len(expected)
    for got, want in zip(answered, expected, strict=True):
        assert [item["label"] for item in got] == [label for label, _ in want]
        assert [item["score"] for item in got] == pytest.approx([s for _, s in want], abs=1e-9)
        scores = [item["score"] for item in got]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_top_k_answers_scores_equal_to_the_reference(
    client: httpx.Client, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:100]] + ["a text with no known words zzqx", "Python"]
    expected = score_labels(model, texts, 3)
    singles = [client.post("/predict", json={"text": t, "top_k": 3}).json() for t in texts[:40]]
    assert_scores_equal_the_reference([a["scores"] for a in singles], expected[:40])
    assert [a["label"] for a in singles] == [ranked[0][0] for ranked in expected[:40]]
    batch = client.post("/predict", json={"texts": texts, "top_k": 3}).json()  # over max_size
    assert_scores_equal_the_reference(batch["scores"], expected)
    assert batch["labels"] == predict_labels(model, texts)
    small = client.post("/predict", json={"texts": texts[:5], "top_k": 1}).json()
    assert [ranked[0]["label"] for ranked in small["scores"]] == small["labels"]
    everything = client.post("/predict", json={"text": "Python", "top_k": len(model.labels)})
    assert sorted(item["label"] for item in everything.json()["scores"]) == model.labels
    plain = client.post("/predict", json={"text": "Python"}).json()
    assert set(plain) == {"label", "model_version"}  # no top_k: no scores
    assert set(client.post("/predict", json={"texts": ["Python"]}).json()) == {
        "labels",
        "model_version",
    }


def test_concurrent_top_k_and_plain_requests_get_their_own_answers(
    client: httpx.Client, model: TrainedModel, corpus: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in corpus[:240]]
    labels = dict(zip(texts, predict_labels(model, texts), strict=True))
    top_k_by_text = {text: (None, 1, 2, 3)[index % 4] for index, text in enumerate(texts)}

    def ask(text: str) -> dict[str, Any]:
        top_k = top_k_by_text[text]
        body = {"text": text} if top_k is None else {"text": text, "top_k": top_k}
        answer: dict[str, Any] = client.post("/predict", json=body).json()
        return answer

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, texts))
    for text, answer in zip(texts, answers, strict=True):
        assert answer["label"] == labels[text]
        top_k = top_k_by_text[text]
        if top_k is None:
            assert "scores" not in answer
        else:
            assert len(answer["scores"]) == top_k
            assert answer["scores"][0]["label"] == answer["label"]


BAD_TOP_K = [0, -1, 1.5, "3", True, None, [3]]


@pytest.mark.parametrize("top_k", BAD_TOP_K)
@pytest.mark.parametrize("shape", ["text", "texts"])
@pytest.mark.parametrize("served", [True, False], ids=["model", "no_model"])
def test_bad_top_k_is_400_naming_it_with_or_without_a_model(
    make_client: Any, model_root: Path, model: TrainedModel, top_k: Any, shape: str, served: bool
) -> None:
    if served:
        publish(model_root, model)
    body = {shape: "python bindings" if shape == "text" else ["python", "bindings"]}
    response = make_client().post("/predict", json={**body, "top_k": top_k})
    assert "top_k" in assert_error(response, 400, "validation_error")["fields"]


def test_top_k_above_the_label_count_is_400_naming_the_limit(
    client: httpx.Client, model: TrainedModel
) -> None:
    too_many = len(model.labels) + 1
    for body in ({"text": "python"}, {"texts": ["python"] * 100}, {"texts": ["python"]}):
        error = assert_error(
            client.post("/predict", json={**body, "top_k": too_many}), 400, "validation_error"
        )
        assert f"at most {len(model.labels)}" in error["fields"]["top_k"][0]
        assert f"at most {len(model.labels)}" in error["detail"]


def test_a_valid_top_k_without_a_model_is_503(make_client: Any) -> None:
    client = make_client()
    for body in ({"text": "python", "top_k": 2}, {"texts": ["a"], "top_k": 100}):
        assert_error(client.post("/predict", json=body), 503, "no_model")


def test_no_model_is_503_then_hot_reload_without_restart(
    make_client: Any, model_root: Path, model: TrainedModel
) -> None:
    client = make_client()
    response = client.post("/predict", json={"text": "hello"})
    assert "train" in assert_error(response, 503, "no_model")["detail"]
    assert client.get("/health/ready").json()["model_version"] is None

    version = publish(model_root, model)

    def answered() -> httpx.Response | None:
        answer = client.post("/predict", json={"text": "hello"})
        return answer if answer.status_code == 200 else None

    answer = wait_until(answered, timeout=2, interval=0.02, what="the new model answering")
    assert answer.json()["model_version"] == version
    assert client.get("/health/ready").json()["model_version"] == version


@pytest.mark.parametrize("damage", ["bad_checksum", "truncated_pickle"])
def test_corrupt_new_version_leaves_the_old_one_serving(
    client: httpx.Client, model_root: Path, damage: str
) -> None:
    old = client.post("/predict", json={"text": "x"}).json()["model_version"]
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

    def load_error_reported() -> dict[str, Any] | None:
        ready: dict[str, Any] = client.get("/health/ready").json()
        return ready if ready["model_error"] else None

    health = wait_until(load_error_reported, timeout=2, interval=0.02, what="the load error")
    assert health["model_version"] == old and bad in health["model_error"]
    # Anyone may ask: the answer names the version, not the file or the exception.
    assert str(model_root) not in json.dumps(health) and "sha256" not in json.dumps(health)
    assert client.post("/predict", json={"text": "x"}).json()["model_version"] == old


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": 5}, "text"),
        ({"text": None, "texts": None}, "text"),
        ({"text": None, "texts": ["a"]}, "text"),
        ({"text": "a", "texts": None}, "texts"),
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
    client: httpx.Client, body: Any, field: str
) -> None:
    error = assert_error(client.post("/predict", json=body), 400, "validation_error")
    assert field in error["fields"]


def test_malformed_bodies(client: httpx.Client) -> None:
    def send(body: bytes, content_type: str | None = "application/json") -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return client.post("/predict", content=body, headers=headers)

    assert_error(send(b'{"text": '), 400, "invalid_json")
    assert_error(send(b'{"text": "\xff\xfe"}'), 400, "invalid_json")
    assert_error(send(b"text=hi", "text/plain"), 415, "unsupported_media_type")
    assert_error(send(b"{}", None), 415, "unsupported_media_type")
    huge = json.dumps({"texts": ["word " * 10_000] * 1000}).encode()
    assert_error(send(huge), 413, "request_entity_too_large")
    # A chunked body (no Content-Length) is read like any other, and the limit holds for it too.
    chunked = client.post(
        "/predict",
        content=iter([b'{"text": ', b'"a chunked body"}']),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 200 and chunked.json()["label"]
    mib = 1 << 20
    huge_chunks = iter([huge[start : start + mib] for start in range(0, len(huge), mib)])
    json_type = {"Content-Type": "application/json"}
    assert_error(
        client.post("/predict", content=huge_chunks, headers=json_type),
        413,
        "request_entity_too_large",
    )
    assert send(b'{"text": "still serving"}').status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/predict", {"POST"}),
        ("DELETE", "/train", {"POST"}),
        ("POST", "/train/some-job", {"GET", "HEAD"}),
        ("PUT", "/health/ready", {"GET", "HEAD"}),
        ("TRACE", "/health/live", {"GET", "HEAD"}),
    ],
)
def test_a_method_a_path_does_not_take_is_405_with_allow(
    client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    advertised = {name.strip() for name in response.headers["Allow"].split(",")}
    assert allowed <= advertised and method not in advertised


def test_unknown_urls_answer_json(client: httpx.Client) -> None:
    assert_error(client.get("/nothing"), 404, "not_found")


def test_train_queues_a_job_and_reports_it(client: httpx.Client) -> None:
    response = client.post("/train")
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and response.headers["Location"] == f"/train/{job['job_id']}"
    assert client.post("/train").json()["job_id"] == job["job_id"]  # still queued: same job
    assert client.get(f"/train/{job['job_id']}").json()["status"] == "queued"
    assert_error(client.get("/train/no-such-job"), 404, "job_not_found")
    assert_error(client.post("/train", json={"rows": 5}), 400, "invalid_request")


def test_redis_down_is_503_broker_unavailable(make_client: Any) -> None:
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert_error(client.post("/train"), 503, "broker_unavailable")
    assert_error(client.get("/train/some-job"), 503, "broker_unavailable")
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert ready.json()["checks"] == {"redis": "unavailable"}  # no exception text


PREDICT_BODIES = [
    {"text": "a regex engine"},
    {"text": "x" * 40},
    {"text": "x" * 41},
    {"text": ""},
    {"text": " \t\n"},
    {"text": 5},
    {"text": None},
    {"texts": ["one", "two", "three"]},
    {"texts": ["one", "two", "three", "four"]},
    {"texts": []},
    {"texts": ["ok", " "]},
    {"texts": "one"},
    {"text": "a", "texts": ["b"]},
    {"text": None, "texts": ["b"]},
    {"text": "a", "lang": "en"},
    {},
    ["a"],
    {"text": "a regex engine", "top_k": 1},
    {"text": "a regex engine", "top_k": 6},  # the test model's label count
    {"text": "a regex engine", "top_k": 7},
    {"texts": ["one", "two"], "top_k": 2},
    {"texts": ["one", "two"], "top_k": 7},
    {"text": "a", "top_k": 0},
    {"text": "a", "top_k": -1},
    {"text": "a", "top_k": 1.5},
    {"text": "a", "top_k": 3.0},
    {"text": "a", "top_k": "3"},
    {"text": "a", "top_k": True},
    {"text": "a", "top_k": None},
    {"top_k": 2},
]


def test_the_openapi_body_schema_accepts_exactly_what_predict_accepts(
    make_client: Any, model_root: Path, model: TrainedModel
) -> None:
    publish(model_root, model)
    assert len(model.labels) == 6  # the top_k bodies above are around this limit
    client = make_client(predict_max_texts=3, predict_max_chars=40)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    validator = Draft202012Validator(schema)
    for body in PREDICT_BODIES:
        status = client.post("/predict", json=body).status_code
        assert status in (200, 400) and (status == 200) == validator.is_valid(body), (body, status)


def test_openapi_and_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    validate(schema)
    assert {"/predict", "/train", "/train/{job_id}", "/health/live", "/health/ready"} <= set(
        schema["paths"]
    )
    train = schema["paths"]["/train"]["post"]["responses"]
    assert train["202"]["headers"]["Location"]["required"] is True
    # What the body layer answers on any route for a body it refuses: too large, too slow, busy.
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            assert {"408", "413", "503"} <= set(responses), operation["summary"]
            assert "Retry-After" in responses["503"]["headers"], operation["summary"]
    assert "swagger-ui" in client.get("/docs").text
    script = client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_a_client_gone_mid_body_costs_nothing(client: httpx.Client) -> None:
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port)) as raw:
        raw.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"text": "half a bo'
        )
    answer = client.post("/predict", json={"text": "after the broken request"})
    assert answer.status_code == 200 and answer.json()["label"]


DEEP = 5_000  # levels: far beyond any parser's recursion limit


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"texts": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"text": "a", "top_k": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
    ],
    ids=["lists", "texts", "objects"],
)
def test_json_nested_thousands_deep_is_400(client: httpx.Client, body: bytes) -> None:
    json_type = {"Content-Type": "application/json"}
    error = assert_error(client.post("/predict", content=body, headers=json_type), 400)
    assert error["error"] == "invalid_json" and "deep" in error["detail"]
    assert client.post("/predict", json={"text": "still serving"}).status_code == 200


def test_total_characters_and_top_k_are_capped_and_declared(
    make_client: Any, model_root: Path, model: TrainedModel
) -> None:
    publish(model_root, model)
    client = make_client(predict_max_total_chars=100, predict_max_top_k=2)
    over = client.post("/predict", json={"texts": ["x" * 60, "y" * 60]})  # each one allowed
    detail = assert_error(over, 413, "request_entity_too_large")["detail"]
    assert "120" in detail and "100" in detail
    assert client.post("/predict", json={"texts": ["x" * 50, "y" * 50]}).status_code == 200
    top_k = assert_error(client.post("/predict", json={"text": "a", "top_k": 3}), 400)
    assert top_k["error"] == "validation_error" and "at most 2" in top_k["fields"]["top_k"][0]
    assert len(client.post("/predict", json={"text": "a", "top_k": 2}).json()["scores"]) == 2
    schema = client.get("/openapi.json").json()
    assert (
        schema["components"]["schemas"]["PredictRequest"]["oneOf"][0]["properties"]["top_k"][
            "maximum"
        ]
        == 2
    )
    assert (
        "100 characters" in schema["paths"]["/predict"]["post"]["responses"]["413"]["description"]
    )


def probe_while_labelling(url: str, body: bytes, headers: dict[str, str]) -> list[float]:
    """Seconds each /health/live probe took, every 10 ms, while `body` was being labelled."""
    latencies: list[float] = []
    with (
        httpx.Client(base_url=url, timeout=120, headers=headers) as batch_client,
        httpx.Client(base_url=url, timeout=5) as probe,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        probe.get("/health/live")  # connected before the batch starts
        json_type = {"Content-Type": "application/json"}
        answer = pool.submit(batch_client.post, "/predict", content=body, headers=json_type)
        while not answer.done():
            started = time.perf_counter()
            assert probe.get("/health/live").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
        labelled = answer.result()
    assert labelled.status_code == 200 and len(labelled.json()["labels"]) == 1000
    assert len(latencies) >= 10, "the batch was answered too fast to probe"
    return latencies


def test_live_answers_within_50_ms_while_the_largest_batch_is_labelled(
    start_service: Callable[..., str],
    redis_db_url: str,
    model_root: Path,
    model: TrainedModel,
    corpus: list[dict[str, str]],
    service_headers: dict[str, str],
) -> None:
    """The largest batch the default caps take (PREDICT_MAX_TOTAL_CHARS, 10 M characters in
    1 000 texts) on a server process of its own, probed from this one while it is labelled.

    Before, the loop labelled it and the probe waited for the whole batch (3.5 s). One retry:
    on a machine loaded beyond its cores, scheduling alone delays an idle server's probe by up
    to ~30 ms now and then (docs/benchmarks.md, "Hostile input").
    """
    publish(model_root, model)
    url = start_service("algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_root))
    limits = AlgorithmSettings()
    assert limits.predict_max_texts == 1000
    words = " ".join(row["text"] for row in corpus).split()
    each = limits.predict_max_total_chars // limits.predict_max_texts
    text = " ".join(itertools.islice(itertools.cycle(words), each // 4))[:each]
    texts = [text[shift:] + text[:shift] for shift in range(limits.predict_max_texts)]
    body = json.dumps({"texts": texts}).encode()
    slowest = [max(probe_while_labelling(url, body, service_headers))]
    if slowest[0] >= 0.05:
        slowest.append(max(probe_while_labelling(url, body, service_headers)))
    assert min(slowest) < 0.05, slowest
