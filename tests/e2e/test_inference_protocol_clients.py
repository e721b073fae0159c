"""The /v2 API of both live services as the clients people use see it.

tritonclient and the kserve SDK run from their own virtualenv (`.venv-clients`, made by
`make test`), through tests/e2e/oip_clients.py; MLServer's StringCodec request shapes ([N, 1]
with `content_type` parameters, and the older [N]) are written out here from its documentation.
One algorithm service and one web in front of it serve the whole module (the tests only read).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from algorithm.ml.artifacts import publish_model_version
from algorithm.ml.training import TrainedModel, predict_labels, score_labels
from tests.helpers import bearer, signing_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = REPO_ROOT / ".venv-clients" / "bin" / "python"
DRIVER = Path(__file__).with_name("oip_clients.py")
TEXTS = ["Python bindings for the GTK toolkit", "documentation for the GNU C library"]
READS_PER_MINUTE = 60  # web's reads limit here, low enough to reach in one test
# Both tests as committing tests (the algorithm one only pays the flush after it): pytest-django
# runs committing tests before the ones without a database and would split the module in two,
# starting its algorithm service twice.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def model(fixture_model: TrainedModel) -> TrainedModel:
    return fixture_model


@pytest.fixture(scope="module")
def algorithm(
    model: TrainedModel,
    start_module_service: Callable[..., str],
    module_redis_url: str,
    service_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The algorithm service with a published model, its URL, version and service token."""
    model_dir = tmp_path_factory.mktemp("models")
    manifest = publish_model_version(
        model_dir, model, metrics={}, fingerprint={}, rows=0, signing_keys=signing_keys()
    )
    url = start_module_service("algorithm", REDIS_URL=module_redis_url, MODEL_DIR=str(model_dir))
    return {"url": url, "version": str(manifest["version"]), "token": service_token}


@pytest.fixture
def web(
    algorithm: dict[str, str],
    start_service: Callable[..., str],
    module_redis_url: str,
    test_database_url: str,
    transactional_db: Any,
    tokens: dict[str, str],
) -> dict[str, str]:
    """web in front of `algorithm` (its reads limited to READS_PER_MINUTE), and a reader token."""
    url = start_service(
        "web",
        DATABASE_URL=test_database_url,
        REDIS_URL=module_redis_url,
        ALGORITHM_URL=algorithm["url"],
        RATE_LIMIT_READS_PER_MINUTE=str(READS_PER_MINUTE),
    )
    return {"url": url, "version": algorithm["version"], "token": tokens["reader"]}


def run_clients(base_url: str, token: str) -> dict[str, Any]:
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: `make test` creates it (make clients-venv)")
    done = subprocess.run(
        [str(CLIENTS_PYTHON), str(DRIVER), base_url, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def check_clients(service: dict[str, str], model: TrainedModel) -> None:
    """tritonclient and the kserve SDK see the model's labels, scores and version."""
    results = run_clients(service["url"], service["token"])
    expected = predict_labels(model, TEXTS)
    triton, kserve = results["tritonclient"], results["kserve"]
    assert (triton["live"], triton["ready"], triton["model_ready"]) == (True, True, True)
    assert triton["labels"] == expected and triton["model_version"] == service["version"]
    assert triton["id"] == "t-1"
    classes = [str(label) for label in model.classifier.classes_]
    assert triton["top_shape"] == [2, 3]
    for row, best in zip(triton["top"], score_labels(model, TEXTS, 3), strict=True):
        cells = [cell.split(":", 2) for cell in row]
        assert [classes[int(index)] for _, index, _ in cells] == [label for label, _ in best]
        assert [label for _, _, label in cells] == [label for label, _ in best]
        assert [float(score) for score, _, _ in cells] == pytest.approx(
            [s for _, s in best], abs=1e-5
        )
    assert triton["metadata"]["name"] == "default"
    assert triton["metadata"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert "classification" in triton["server"]["extensions"]
    assert "no model named 'nope'" in triton["unknown_model"].lower()
    assert (kserve["live"], kserve["ready"], kserve["model_ready"]) == (True, True, True)
    assert kserve["labels"] == expected and kserve["model_name"] == "default"
    assert kserve["id"] == "k-1" and kserve["probabilities_shape"] == [2, len(classes)]
    # The README's example, pasted as it stands: its labels, the k best of each, the version.
    printed = "\n".join(results["readme"])
    readme_texts = ["Python bindings for the GTK toolkit", "a regex engine"]
    for label, best in zip(
        predict_labels(model, readme_texts), score_labels(model, readme_texts, 3), strict=True
    ):
        assert f"'{label}'" in results["readme"][0], printed
        assert all(f":{best_label}'" in printed for best_label, _ in best), printed
    assert results["readme"][-1] == service["version"], printed


def check_mlserver_string_codec(service: dict[str, str], model: TrainedModel) -> None:
    """StringCodec's request: BYTES [N, 1] (or [N] before MLServer 1.2), content_type "str"."""
    texts = TEXTS * 3
    for shape in ([len(texts), 1], [len(texts)]):
        request = {
            "parameters": {"content_type": "str"},
            "inputs": [
                {
                    "name": "text",
                    "datatype": "BYTES",
                    "shape": shape,
                    "parameters": {"content_type": "str"},
                    "data": texts,
                }
            ],
            "outputs": [{"name": "label"}],
        }
        answer = httpx.post(
            f"{service['url']}/v2/models/default/infer",
            json=request,
            headers=bearer(service["token"]),
        )
        assert answer.status_code == 200, answer.text
        (label,) = answer.json()["outputs"]
        assert label["shape"] == shape
        assert label["data"] == predict_labels(model, texts)


def test_the_algorithm_service_answers_the_clients(
    algorithm: dict[str, str], model: TrainedModel
) -> None:
    check_clients(algorithm, model)
    check_mlserver_string_codec(algorithm, model)


def test_web_answers_the_clients_behind_its_token_and_rate_limits(
    web: dict[str, str], model: TrainedModel
) -> None:
    check_clients(web, model)
    check_mlserver_string_codec(web, model)
    one = {
        "id": "one",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": TEXTS[:1]}],
        "outputs": [{"name": "label"}],
    }
    # One text for `label` only: the native predict's coalesced path, answered in the protocol.
    alone = httpx.post(
        f"{web['url']}/v2/models/default/infer", json=one, headers=bearer(web["token"])
    ).json()
    assert alone["model_version"] == web["version"] and alone["id"] == "one"
    assert alone["outputs"][0]["data"] == predict_labels(model, TEXTS[:1])
    anonymous = httpx.post(f"{web['url']}/v2/models/default/infer", json=one)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"]
    assert anonymous.json()["code"] == "not_authenticated" and anonymous.json()["error"]
    with httpx.Client(base_url=web["url"], headers=bearer(web["token"])) as client:
        answers = [client.get("/v2/health/live") for _ in range(READS_PER_MINUTE)]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and refused[0].json()["code"] == "rate_limited"
    assert int(refused[0].headers["Retry-After"]) > 0
