"""One algorithm process serves many named models: loaded on first use, each following its own
champion, unknown names refused, and a memory budget kept by unloading the least recently used.

The registry's side is played with `core.serving_protocol` directly (an announcement per name,
as web's reconciler writes one for every registered name); versions are published as the worker
publishes them.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from algorithm.ml import artifacts
from algorithm.ml.training import TrainedModel, fit_model
from algorithm.ml.tuning import TrainingPlan
from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from core import serving_protocol
from core.harness.scratch import free_port
from core.serving_protocol import Desired
from tests.algorithm.conftest import LiveServer
from tests.algorithm.registry_helpers import model_metric
from tests.helpers import assert_error, signing_keys, wait_until

Corpus = list[tuple[str, str]]
TEXT = "a library for parsing command line options"


def publish(root: Path, model: TrainedModel, *, make_current: bool = True) -> str:
    manifest = artifacts.publish_model_version(
        root,
        model,
        metrics={},
        fingerprint={"rows": 0},
        rows=0,
        signing_keys=signing_keys(),
        make_current=make_current,
    )
    return str(manifest["version"])


def announce(client: redis.Redis, model: str, champion: str | None, seq: int = 1) -> None:
    serving_protocol.announce(client, Desired(model=model, champion=champion, seq=seq))


@pytest.fixture(scope="module")
def versions(fixture_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Four versions of the session's model, published in a module model root."""
    root = tmp_path_factory.getbasetemp() / "named-models"
    root.mkdir()
    return [publish(root, fixture_model) for _ in range(4)]


@pytest.fixture(scope="module")
def service(
    versions: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
    service_headers: dict[str, str],
) -> Iterator[httpx.Client]:
    """A live service over the module's versions (no budget), with a client sending the token."""
    root = tmp_path_factory.getbasetemp() / "named-models"
    server = LiveServer(
        create_asgi_app(AlgorithmSettings(model_dir=root, redis_url=module_redis_url))
    )
    with httpx.Client(base_url=server.url, headers=service_headers, timeout=15) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def registry(module_redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(module_redis_url, decode_responses=True) as client:
        yield client


def test_three_names_answer_each_with_its_own_champion(
    service: httpx.Client, registry: redis.Redis, versions: list[str]
) -> None:
    names = {"topic": versions[0], "sentiment": versions[1], "spam": versions[2]}
    for name, version in names.items():
        announce(registry, name, version)
    for name, version in names.items():
        answer = service.post("/predict", json={"model": name, "texts": [TEXT, "a font"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        infer = service.post(
            f"/v2/models/{name}/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]},
        )
        assert infer.status_code == 200, infer.text
        assert (infer.json()["model_name"], infer.json()["model_version"]) == (name, version)
    ready = service.get("/health/ready").json()["models"]
    assert {name: ready[name]["version"] for name in names} == names
    assert all(ready[name]["memory_bytes"] > 0 and not ready[name]["pinned"] for name in names)
    assert ready["default"]["pinned"]
    report = wait_until(
        lambda: next(
            (r for r in serving_protocol.read_reports(registry) if set(names) <= set(r.models)),
            None,
        ),
        timeout=5,
        what="a report naming the three models",
    )
    assert {name: report.models[name].version for name in names} == names
    assert serving_protocol.all_serve([report], versions[1], "sentiment")


def test_unknown_names_are_404_a_name_without_champion_503_and_a_bad_name_400(
    service: httpx.Client, registry: redis.Redis
) -> None:
    assert_error(
        service.post("/predict", json={"model": "nobody", "text": TEXT}), 404, "model_not_found"
    )
    assert service.get("/v2/models/nobody/ready").status_code == 404
    announce(registry, "untrained", None)
    body = assert_error(
        service.post("/predict", json={"model": "untrained", "text": TEXT}), 503, "no_model"
    )
    assert "untrained" in body["detail"]
    bad = assert_error(
        service.post("/predict", json={"model": "Not A Name", "text": TEXT}),
        400,
        "validation_error",
    )
    assert "model" in bad["fields"]
    assert model_metric(str(service.base_url), "textclf_model_loads_total", "nobody") == 0


def test_concurrent_first_requests_share_one_load(
    service: httpx.Client, registry: redis.Redis, versions: list[str]
) -> None:
    announce(registry, "burst", versions[3])

    def ask(_: int) -> httpx.Response:
        return service.post("/predict", json={"model": "burst", "text": TEXT})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, range(32)))
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["model_version"] for answer in answers} == {versions[3]}
    assert model_metric(str(service.base_url), "textclf_model_loads_total", "burst") == 1
    assert model_metric(str(service.base_url), "textclf_model_predictions_total", "burst") == 32


def test_one_names_champion_moves_within_two_seconds_while_another_keeps_answering(
    service: httpx.Client, registry: redis.Redis, versions: list[str]
) -> None:
    announce(registry, "mover", versions[0])
    announce(registry, "steady", versions[1])
    failures: list[str] = []
    seen: dict[str, set[str]] = {"mover": set(), "steady": set()}
    stop = threading.Event()

    def keep_predicting(name: str) -> None:
        while not stop.is_set():
            answer = service.post("/predict", json={"model": name, "text": TEXT})
            if answer.status_code != 200:
                failures.append(answer.text)
            else:
                seen[name].add(answer.json()["model_version"])

    for name in seen:  # loaded before the move: a move is followed, not a cold load
        assert service.post("/predict", json={"model": name, "text": TEXT}).status_code == 200
    threads = [threading.Thread(target=keep_predicting, args=(name,)) for name in seen]
    for thread in threads:
        thread.start()
    try:
        announced = time.monotonic()
        announce(registry, "mover", versions[2], seq=2)

        def moved() -> bool:
            answer = service.post("/predict", json={"model": "mover", "text": TEXT})
            return answer.json().get("model_version") == versions[2]

        wait_until(moved, timeout=2, interval=0.02, what="mover's new champion served")
        assert time.monotonic() - announced < 2
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert seen["steady"] == {versions[1]}


def test_train_names_its_model_and_refuses_unknown_ones(
    service: httpx.Client, registry: redis.Redis, module_redis_url: str, versions: list[str]
) -> None:
    announce(registry, "tickets", versions[0])
    queued = service.post("/train", json={"model": "tickets"})
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert job["model"] == "tickets"
    assert service.get(f"/train/{job['job_id']}").json()["model"] == "tickets"
    sent = [json.loads(raw) for raw in registry.lrange("celery", 0, -1)]
    bodies = [json.loads(base64.b64decode(message["body"])) for message in sent]
    assert ([job["job_id"]], {"model": "tickets"}) in [(a, k) for a, k, _ in bodies]
    assert service.post("/train").json()["model"] == "default"  # no body: as before names
    assert_error(service.post("/train", json={"model": "nobody"}), 404, "model_not_found")
    assert_error(service.post("/train", json={"model": "No!"}), 400, "validation_error")


def test_a_cold_model_answers_503_with_retry_after_past_the_wait_and_serves_once_loaded(
    serve_app: Callable[[object], httpx.Client],
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
    registry: redis.Redis,
    versions: list[str],
) -> None:
    root = tmp_path_factory.getbasetemp() / "named-models"
    settings = AlgorithmSettings(
        model_dir=root, redis_url=module_redis_url, model_load_wait_seconds=0
    )
    client = serve_app(create_asgi_app(settings))
    announce(registry, "slow", versions[0])
    first = client.post("/predict", json={"model": "slow", "text": TEXT})
    body = assert_error(first, 503, "model_loading")
    assert "slow" in body["detail"]
    assert int(first.headers["Retry-After"]) > 0

    def served() -> bool:
        return client.post("/predict", json={"model": "slow", "text": TEXT}).status_code == 200

    wait_until(served, timeout=10, what="the cold model served once loaded")


def test_a_pinned_name_is_loaded_at_start_and_never_unloaded(
    serve_app: Callable[[object], httpx.Client],
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
    registry: redis.Redis,
    versions: list[str],
) -> None:
    announce(registry, "always", versions[1])
    settings = AlgorithmSettings(
        model_dir=tmp_path_factory.getbasetemp() / "named-models",
        redis_url=module_redis_url,
        model_pinned=("always",),
        model_memory_budget_mb=1,  # smaller than any two models: unpinned ones take turns
    )
    client = serve_app(create_asgi_app(settings))

    def pinned() -> dict[str, object] | None:
        found: dict[str, object] | None = client.get("/health/ready").json()["models"].get("always")
        return found

    loaded = wait_until(pinned, timeout=5, what="the pinned model loaded at start")
    assert (loaded["version"], loaded["pinned"]) == (versions[1], True)
    announce(registry, "passing", versions[2])
    answer = client.post("/predict", json={"model": "passing", "text": TEXT})
    assert answer.status_code == 200, answer.text
    # Over the budget with it: the pinned ones stay, and a model alone over budget is served.
    assert {"default", "always"} <= set(client.get("/health/ready").json()["models"])


def test_redis_down_is_503_with_retry_after_for_a_cold_name_never_500(
    serve_app: Callable[[object], httpx.Client], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.getbasetemp() / "named-models"
    nowhere = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    client = serve_app(create_asgi_app(AlgorithmSettings(model_dir=root, redis_url=nowhere)))
    answer = client.post("/predict", json={"model": "topic", "text": TEXT})
    assert_error(answer, 503, "broker_unavailable")
    assert answer.headers["Retry-After"] == "2"
    # `default` keeps answering from what it loaded (the volume's `current`), Redis or not.
    assert client.post("/predict", json={"text": TEXT}).status_code == 200


# --- the memory budget, in a process of its own (its RSS is what is measured) ---

BUDGET_MB = 80
PADDING_TOKENS = 200  # distinct tokens per row: a vocabulary and weights of ~35 MB per model


@pytest.fixture(scope="module")
def big_versions(
    fixture_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """Three versions of one model of about 35 MB in memory (the corpus with distinct filler
    tokens per row), so that three of them cannot fit a budget that holds two."""
    texts = [
        f"{text} " + " ".join(f"t{row}x{token}" for token in range(PADDING_TOKENS))
        for row, (text, _) in enumerate(fixture_corpus)
    ]
    plan = TrainingPlan(
        ngram_max=1, min_df=1, solver="liblinear", regularization=1.0, class_weight=None
    )
    model = fit_model(texts, [label for _, label in fixture_corpus], plan=plan)
    root = tmp_path_factory.mktemp("big-models")
    # Not `current`: `default` serves nothing here, so the budget is the named models' alone.
    return root, [publish(root, model, make_current=False) for _ in range(3)]


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_budget_for_two_of_three_models_serves_all_three_within_it(
    start_service: Callable[..., str],
    big_versions: tuple[Path, list[str]],
    redis_db_url: str,
    service_headers: dict[str, str],
) -> None:
    url = start_service(
        "algorithm",
        REDIS_URL=redis_db_url,
        MODEL_DIR=str(big_versions[0]),
        MODEL_MEMORY_BUDGET_MB=str(BUDGET_MB),
    )
    client = redis.Redis.from_url(redis_db_url, decode_responses=True)
    report = wait_until(lambda: next(iter(serving_protocol.read_reports(client)), None), timeout=10)
    pid = int(report.replica.rsplit(":", 1)[1])
    names = ["north", "south", "east"]
    for name, version in zip(names, big_versions[1], strict=True):
        announce(client, name, version)
    with httpx.Client(base_url=url, headers=service_headers, timeout=30) as http:
        assert http.post("/predict", json={"model": "nobody", "text": TEXT}).status_code == 404
        baseline = vm_rss(pid)
        peak = baseline
        for name in names * 2:  # round robin: each request finds its model unloaded
            answer = http.post("/predict", json={"model": name, "text": TEXT})
            assert answer.status_code == 200, answer.text
            peak = max(peak, vm_rss(pid))
        loads = sum(model_metric(url, "textclf_model_loads_total", name) for name in names)
        unloads = sum(model_metric(url, "textclf_model_unloads_total", name) for name in names)
        held = http.get("/health/ready").json()["models"]
    replica = wait_until(
        lambda: next(
            (r for r in serving_protocol.read_reports(client) if r.models.keys() - {"default"}),
            None,
        ),
        timeout=5,
    )
    client.close()
    assert replica.memory_budget_bytes == BUDGET_MB * 1024 * 1024
    assert replica.rss_bytes is not None and replica.rss_bytes > baseline
    budget = BUDGET_MB * 1024 * 1024
    mib = 2**20
    print(f"RSS baseline {baseline / mib:.1f} MiB, peak {peak / mib:.1f} MiB, held {held}")
    still_held = set(held) & set(names)
    assert len(still_held) <= 2
    assert loads >= 5 and unloads == loads - len(still_held)  # every load beyond two unloaded one
    assert peak <= baseline + budget, (baseline, peak)
