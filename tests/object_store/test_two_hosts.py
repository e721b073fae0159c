"""Two algorithm "hosts" (separate processes, separate caches, no shared model directory) follow
the registry's champion from the object store together, and a bad version fails on neither."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store
from algorithm.ml.training import TrainedModel
from core.serving_protocol import ReplicaReport
from tests.algorithm.registry_helpers import (
    Announcer,
    refused_loads,
    reports,
    wait_until_all_serve,
)
from tests.helpers import ServiceStarter, StartingService, assert_error, wait_until
from tests.object_store.conftest import object_bytes, overwrite_object

pytestmark = pytest.mark.slow
HOSTS = 2


class SteadyTraffic:
    """Predictions sent to every host in turn until stopped; every answer is kept."""

    def __init__(self, urls: list[str], headers: dict[str, str]) -> None:
        self.urls = urls
        self.headers = headers
        self.answers: list[tuple[int, str | None]] = []  # (status, model version)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=10) as client:
            while not self._stop.is_set():
                for url in self.urls:
                    try:
                        answer = client.post(f"{url}/predict", json={"text": "a web server"})
                        version = answer.json().get("model_version")
                        self.answers.append((answer.status_code, version))
                    except httpx.HTTPError as exc:
                        self.answers.append((0, repr(exc)))
                time.sleep(0.005)


def started(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health/started", timeout=5)


def test_two_hosts_follow_moves_and_rollbacks_together_without_a_failed_prediction(
    start_service: ServiceStarter,
    registry_redis: redis.Redis,
    redis_db_url: str,
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Callable[[S3Store, TrainedModel], str],
    quick_models: list[TrainedModel],
    s3_environment: dict[str, str],
    s3_client: Any,
    service_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    publisher = open_s3(store_url, host="worker")
    old, new = publish_to(publisher, quick_models[0]), publish_to(publisher, quick_models[1])

    def start_host(name: str) -> StartingService:
        return start_service.launch(
            "algorithm",
            REDIS_URL=redis_db_url,
            MODEL_STORE_URL=store_url,
            MODEL_DIR=str(tmp_path / f"{name}-models"),  # empty: nothing shared on disk
            MODEL_CACHE_DIR=str(tmp_path / f"{name}-cache"),
            **s3_environment,
        )

    # Side by side (seconds of imports each), from this thread: a child dies with the thread
    # that started it.
    starting = [start_host(f"host{i}") for i in range(HOSTS)]
    urls = [host.wait() for host in starting]
    # Nothing announced yet: started (a fresh install), and honest that there is no model.
    for url in urls:
        assert started(url).status_code == 200
        assert_error(httpx.post(f"{url}/predict", json={"text": "x"}, headers=service_headers), 503)

    announce = Announcer(registry_redis)
    announce(old)
    wait_until_all_serve(registry_redis, old, replicas=HOSTS, timeout=15)
    with SteadyTraffic(urls, service_headers) as traffic:
        for champion in (new, old, new):  # a move, a rollback, and the move again
            announced = announce(champion)
            served = wait_until_all_serve(registry_redis, champion, replicas=HOSTS, timeout=5)
            assert time.monotonic() - announced < 2, "every host serves the move within 2 s"
            assert {report.error for report in served} == {None}
            assert all(started(url).json()["model_version"] == champion for url in urls)

        # A version whose object was replaced in the bucket: refused everywhere, old one serves.
        bad = publish_to(publisher, quick_models[0])
        key = publisher.key(bad, artifacts.CLASSIFIER_FILE)
        overwrite_object(s3_client, key, object_bytes(s3_client, key)[:-100])
        announce(bad)

        def refused() -> list[ReplicaReport] | None:
            found = reports(registry_redis)
            return found if all(r.error_version == bad for r in found) else None

        for report in wait_until(refused, timeout=10, what="both hosts reporting the refusal"):
            assert report.version == new and report.error and "sha256" in report.error
        for url in urls:
            assert_error(started(url), 503, "model_loading")
            assert refused_loads(f"{url}/metrics", artifacts.SHA256_MISMATCH) == 1

        announce(old)  # the rollback that clears it
        wait_until_all_serve(registry_redis, old, replicas=HOSTS, timeout=2)
        assert all(started(url).status_code == 200 for url in urls)
        time.sleep(0.2)  # a few answers from the rolled-back model

    failed = [answer for answer in traffic.answers if answer[0] != 200]
    assert failed == [], failed[:5]
    assert len(traffic.answers) > 50
    assert {version for _, version in traffic.answers} == {old, new}
