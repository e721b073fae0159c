"""Algorithm processes follow the registry's champion: pushed at once, polled, loaded on demand."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import TrainedModel
from algorithm.service.app import create_asgi_app
from algorithm.service.config import AlgorithmSettings
from core import serving_protocol
from tests.algorithm.conftest import LiveServer
from tests.algorithm.registry_helpers import (
    REPLICAS,
    Announcer,
    Corpus,
    fit_quickly,
    forge,
    predicted_versions,
    publish,
    refused_loads,
    reports,
    wait_until_all_serve,
)
from tests.helpers import assert_error, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def announce(registry_redis: redis.Redis) -> Announcer:
    return Announcer(registry_redis)


@pytest.fixture(scope="module")
def models(fixture_corpus: Corpus) -> list[TrainedModel]:
    """Two different models: trained on the even rows, and on the odd ones."""
    return [fit_quickly(fixture_corpus, slice(start, None, 2)) for start in (0, 1)]


def test_every_process_serves_an_announced_champion_within_two_seconds(
    serve_replicas: Callable[..., str],
    versions: list[str],
    registry_redis: redis.Redis,
    announce: Announcer,
    fixture_corpus: Corpus,
    service_headers: dict[str, str],
) -> None:
    old, new = versions
    url = serve_replicas()
    # `current` names it, no registry yet.
    wait_until_all_serve(registry_redis, new, replicas=REPLICAS, timeout=30)
    texts = [text for text, _ in fixture_corpus[:40]]

    for champion in (old, new, old):
        announced = time.monotonic()
        announce(champion)
        served = wait_until_all_serve(registry_redis, champion, replicas=REPLICAS, timeout=2)
        assert time.monotonic() - announced < 2
        assert {report.error for report in served} == {None}
        assert predicted_versions(url, texts, service_headers) == {champion}


def test_a_replica_that_cannot_load_the_champion_says_so_and_keeps_serving(
    serve_replicas: Callable[..., str],
    versions: list[str],
    model_dir: Path,
    models: list[TrainedModel],
    registry_redis: redis.Redis,
    announce: Announcer,
    fixture_corpus: Corpus,
    service_headers: dict[str, str],
) -> None:
    old, new = versions
    announce(old)
    url = serve_replicas()
    wait_until_all_serve(registry_redis, old, replicas=REPLICAS, timeout=30)
    broken = publish(model_dir, models[1])
    # Its pickles changed on the volume, its manifest re-signed with a key the service lacks.
    another_key = SigningKeys.from_secrets([secrets.token_urlsafe(32)])
    forge(model_dir, broken, models[0], sign_with=another_key)

    announce(broken)

    def failed() -> list[serving_protocol.ReplicaReport] | None:
        found = reports(registry_redis)
        return found if all(r.error_version == broken for r in found) else None

    for report in wait_until(failed, timeout=5, what="every replica reporting the failure"):
        assert report.version == old
        assert report.error is not None and "MODEL_SIGNING_KEY" in report.error
    assert predicted_versions(url, [text for text, _ in fixture_corpus[:20]], service_headers) == {
        old
    }
    assert refused_loads(f"{url}/metrics", "unknown_key") == REPLICAS
    ready = httpx.get(f"{url}/health/ready").json()
    assert ready["model_version"] == old and broken in ready["model_error"]

    announce(new)  # the next good champion clears the error
    for report in wait_until_all_serve(registry_redis, new, replicas=REPLICAS, timeout=2):
        assert report.error is None and report.error_version is None


def test_an_announcement_whose_message_was_lost_is_caught_by_the_poll(
    serve_replicas: Callable[..., str], versions: list[str], registry_redis: redis.Redis
) -> None:
    old, new = versions
    serve_replicas(DESIRED_POLL_MS="300")
    wait_until_all_serve(registry_redis, new, replicas=REPLICAS, timeout=30)
    desired = serving_protocol.Desired(champion=old, challenger=None, seq=1)
    # SET without PUBLISH
    registry_redis.set(serving_protocol.DESIRED_KEY, desired.model_dump_json())

    wait_until_all_serve(registry_redis, old, replicas=REPLICAS, timeout=2)


@pytest.mark.parametrize("named_by", ["the desired state", "current"])
def test_a_predict_without_a_model_loads_the_named_one_before_answering(
    serve_replicas: Callable[..., str],
    model_dir: Path,
    models: list[TrainedModel],
    registry_redis: redis.Redis,
    service_headers: dict[str, str],
    named_by: str,
) -> None:
    # Polls far apart and no message: only the predict's own look can find the model.
    url = serve_replicas(DESIRED_POLL_MS="60000", MODEL_POLL_MS="60000")
    assert_error(
        httpx.post(f"{url}/predict", json={"text": "Python"}, headers=service_headers),
        503,
        "no_model",
    )
    version = publish(model_dir, models[0])
    if named_by == "the desired state":
        (model_dir / "current").unlink()  # only the desired state names it
        desired = serving_protocol.Desired(champion=version, challenger=None, seq=1)
        registry_redis.set(serving_protocol.DESIRED_KEY, desired.model_dump_json())

    answers = [
        httpx.post(f"{url}/predict", json={"text": "Python"}, headers=service_headers)
        for _ in range(10)
    ]
    assert [answer.status_code for answer in answers] == [200] * 10
    assert {answer.json()["model_version"] for answer in answers} == {version}


def test_a_process_that_stops_takes_its_report_away(
    redis_db_url: str, model_dir: Path, versions: list[str], registry_redis: redis.Redis
) -> None:
    settings = AlgorithmSettings(model_dir=model_dir, redis_url=redis_db_url)
    server = LiveServer(create_asgi_app(settings))
    try:
        (report,) = wait_until(
            lambda: reports(registry_redis), timeout=10, what="the replica's report"
        )
        assert report.version == versions[1] and report.replica == serving_protocol.replica_name()
    finally:
        stopping = time.monotonic()
        server.stop()
    assert time.monotonic() - stopping < 10
    assert reports(registry_redis) == []  # gone at once, not after the 15 s expiry
