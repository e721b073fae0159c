"""Helpers for tests of processes following the registry: versions, announcements, reports.

The fixtures here (Redis, published versions, algorithm processes) are registered for the tests
under tests/algorithm by its conftest.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from algorithm.ml import artifacts
from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import TrainedModel, fit_model
from algorithm.ml.tuning import TrainingPlan
from core import serving_protocol
from core.serving_protocol import Desired, ReplicaReport
from tests.helpers import signing_keys, wait_until

Corpus = list[tuple[str, str]]
REPLICAS = 2  # algorithm processes of one service: enough to see each one follow
QUICK_PLAN = TrainingPlan(
    ngram_max=1, min_df=1, solver="liblinear", regularization=1.0, class_weight=None
)


def fit_quickly(corpus: Corpus, rows: slice) -> TrainedModel:
    """A servable model without evaluation or plan search (a hundredth of `train_model`'s time):
    for tests that serve, move or compare models, not judge how they were trained."""
    texts = [text for text, _ in corpus[rows]]
    return fit_model(texts, [label for _, label in corpus[rows]], plan=QUICK_PLAN)


def publish(model_dir: Path, model: TrainedModel) -> str:
    """Publish a version's files and point `current` at it, as a promotion does; its name."""
    manifest = artifacts.publish_model_version(
        model_dir,
        model,
        metrics={},
        fingerprint={"rows": 0},
        rows=0,
        retention=50,
        signing_keys=signing_keys(),
    )
    version = str(manifest["version"])
    artifacts.switch_current(model_dir, version)  # explicit: publishing alone may not switch
    return version


def forge(
    model_dir: Path,
    version: str,
    replacement: TrainedModel,
    *,
    sign_with: SigningKeys | None = None,
) -> None:
    """Do what someone who can write the volume but holds no key can: swap a version's pickles
    for another model's and rewrite its manifest with their digests, unsigned or signed with
    `sign_with`."""
    directory = model_dir / version
    for name in (artifacts.VECTORIZER_FILE, artifacts.CLASSIFIER_FILE):
        (directory / name).unlink()
    manifest = json.loads((directory / artifacts.MANIFEST_FILE).read_text())
    manifest.pop("signature", None)
    manifest["sha256"] = artifacts.save_model(replacement, directory)
    if sign_with is not None:
        manifest = sign_with.sign(manifest)
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))


def refused_loads(metrics_url: str, reason: str) -> float:
    """How many loads the service's processes refused for `reason`, from its GET /metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "textclf_model_loads_refused_total" and sample.labels == {
                "reason": reason
            }:
                return sample.value
    return 0.0


def model_metric(base_url: str, name: str, model: str) -> float:
    """The value of `name{model=...}` in the service's GET /metrics (0 when absent)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("model") == model
    )


class Announcer:
    """Moves aliases the way the registry does: SET the desired state, then PUBLISH it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._seq = itertools.count(1)

    def __call__(self, champion: str | None, challenger: str | None = None) -> float:
        """Announce; return the monotonic time right after the announcement."""
        desired = Desired(champion=champion, challenger=challenger, seq=next(self._seq))
        serving_protocol.announce(self.client, desired)
        return time.monotonic()


def reports(client: redis.Redis) -> list[ReplicaReport]:
    return serving_protocol.read_reports(client)


def wait_until_all_serve(
    client: redis.Redis, version: str, *, replicas: int, timeout: float
) -> list[ReplicaReport]:
    """Wait until `replicas` replicas all report serving `version`; return the reports."""

    def served() -> list[ReplicaReport] | None:
        found = reports(client)
        ok = len(found) == replicas and all(r.version == version for r in found)
        return found if ok else None

    return wait_until(served, timeout=timeout, interval=0.01, what=f"every replica on {version}")


def predicted_versions(url: str, texts: list[str], headers: dict[str, str]) -> set[str]:
    """The model versions that answered one prediction per text (each one must succeed).

    A new connection per request: the kernel spreads connections over the processes. `headers`
    carry the service token.
    """
    versions = set()
    for text in texts:
        response = httpx.post(f"{url}/predict", json={"text": text}, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        versions.add(response.json()["model_version"])
    return versions


@pytest.fixture
def registry_redis(redis_db_url: str) -> Iterator[redis.Redis]:
    """This test's Redis as the registry and the replicas use it (announcements, reports)."""
    with redis.Redis.from_url(redis_db_url, decode_responses=True) as connection:
        yield connection


@pytest.fixture
def versions(model_dir: Path, models: list[TrainedModel]) -> list[str]:
    """The module's `models`, published in order; `current` names the last one."""
    return [publish(model_dir, model) for model in models]


@pytest.fixture
def serve_replicas(
    start_service: Callable[..., str], redis_db_url: str, model_dir: Path
) -> Callable[..., str]:
    """Start the algorithm service with REPLICAS processes on this test's Redis and model dir.

    Keyword arguments are extra environment variables; returns the service's URL.
    """

    def start(**env: str) -> str:
        return start_service(
            "algorithm",
            REDIS_URL=redis_db_url,
            MODEL_DIR=str(model_dir),
            ALGORITHM_WORKERS=str(REPLICAS),
            **env,
        )

    return start
