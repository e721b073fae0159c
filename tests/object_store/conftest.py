"""A real S3 server (SeaweedFS's gateway) for the model store's tests, started once, lazily.

Only tests that ask for `object_store` start it (a few seconds); it is stopped when the session
ends. Each test gets a key prefix of its own in the one bucket, so tests never see each other's
versions.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store, make_client
from algorithm.ml.store import parse_store_url
from algorithm.ml.training import TrainedModel
from algorithm.ml.version_cache import VersionCache
from core.harness.object_store import ObjectStore, start_object_store

# The registry's Redis as tests/algorithm use it (announcements, replica reports).
from tests.algorithm.registry_helpers import (
    fit_quickly,
    registry_redis,  # noqa: F401 (a fixture)
)
from tests.helpers import signing_keys

BUCKET = "textclf-models"
CACHE_MAX_BYTES = 256 * 1024 * 1024


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """SeaweedFS with its S3 gateway on a free port, and the tests' bucket."""
    directory = tmp_path_factory.mktemp("seaweedfs")
    store = start_object_store(directory / "data", log_path=directory / "weed.log")
    try:
        store.create_bucket(BUCKET)
        yield store
    finally:
        store.stop()


@pytest.fixture
def s3_environment(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3's standard variables, set for this test (and returned, for child processes)."""
    environment = object_store.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def store_url() -> str:
    """MODEL_STORE_URL of a prefix no other test uses."""
    return f"s3://{BUCKET}/tests/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3_client(object_store: ObjectStore) -> Any:
    """One client made as the services make theirs (from boto3's variables), for every test:
    making one costs a second of loading boto3's service description."""
    with mock.patch.dict(os.environ, object_store.environment()):
        return make_client()


@pytest.fixture
def open_s3(
    s3_client: Any, s3_environment: dict[str, str], tmp_path: Path
) -> Callable[..., S3Store]:
    """An S3Store for MODEL_STORE_URL `url`, with one host's cache directory per `host` name."""

    def make(url: str, *, host: str = "host", max_bytes: int = CACHE_MAX_BYTES) -> S3Store:
        bucket, prefix = parse_store_url(url)
        cache = VersionCache(tmp_path / f"{host}-cache", max_bytes=max_bytes)
        return S3Store(s3_client, bucket=bucket, prefix=prefix, cache=cache)

    return make


@pytest.fixture(scope="session")
def quick_models(fixture_corpus: list[tuple[str, str]]) -> list[TrainedModel]:
    """Two servable models that answer differently: fitted on the even rows, and on the odd."""
    return [
        fit_quickly(fixture_corpus, slice(0, None, 2)),
        fit_quickly(fixture_corpus, slice(1, None, 2)),
    ]


@pytest.fixture
def publish_to(tmp_path: Path) -> Callable[[S3Store, TrainedModel], str]:
    """Publish a model's version as the worker does (files under its model root, then uploaded);
    its name."""

    def publish(store: S3Store, model: TrainedModel) -> str:
        manifest = artifacts.publish_model_version(
            tmp_path / "worker-models",
            model,
            metrics={},
            fingerprint={"rows": 0},
            rows=0,
            signing_keys=signing_keys(),
            retention=None,
            make_current=False,
        )
        version = str(manifest["version"])
        store.publish(tmp_path / "worker-models" / version)
        return version

    return publish


def object_bytes(client: Any, key: str) -> bytes:
    return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def overwrite_object(client: Any, key: str, data: bytes) -> None:
    """Replace an object unconditionally: what a bug or an intruder with bucket access can do."""
    client.put_object(Bucket=BUCKET, Key=key, Body=data)
