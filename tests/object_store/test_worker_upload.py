"""A worker with an object store: the trained version is in the bucket, whole, before the job
says it succeeded, and any host can load it from there; one the store does not take is gone."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from algorithm.ml import artifacts
from algorithm.ml.s3_store import S3Store, make_client
from algorithm.ml.store import MISSING_MANIFEST, STORE_UNREACHABLE
from algorithm.ml.training import TrainedModel
from core.harness.scratch import free_port
from tests.helpers import signing_keys
from tests.object_store.conftest import object_bytes
from worker.publishing import upload

pytestmark = pytest.mark.slow
Job = dict[str, Any]


def test_a_trained_version_is_uploaded_before_the_job_succeeds(
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    s3_environment: dict[str, str],
    s3_client: Any,
    store_url: str,
    open_s3: Callable[..., S3Store],
) -> None:
    corpus = list(fixture_corpus)
    random.Random(3).shuffle(corpus)
    insert_rows(corpus[:200])
    start_worker(MODEL_STORE_URL=store_url, **s3_environment)

    job = wait_for_job(request_training()["job_id"], timeout=120)

    assert job["status"] == "succeeded" and job["promoted"] is True, job
    version = job["model_version"]
    host = open_s3(store_url, host="another-host")
    manifest = object_bytes(s3_client, host.key(version, artifacts.MANIFEST_FILE))
    assert signing_keys().verify(json.loads(manifest))["version"] == version
    loaded = artifacts.load_version_dir(
        host.version_dir(version, signing_keys=signing_keys()), signing_keys=signing_keys()
    )
    assert loaded.version == version and loaded.manifest["rows"] == 200


def test_a_version_the_store_does_not_take_is_not_left_behind(
    open_s3: Callable[..., S3Store],
    store_url: str,
    quick_models: list[TrainedModel],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The job fails before the registry records anything, and nothing of it stays."""
    store = open_s3(store_url)
    reachable = store.client
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store.client = make_client()
    manifest = artifacts.publish_model_version(
        tmp_path / "models",
        quick_models[0],
        metrics={},
        fingerprint={"rows": 0},
        rows=0,
        signing_keys=signing_keys(),
        retention=None,
        make_current=False,
    )
    version_dir = tmp_path / "models" / manifest["version"]

    with pytest.raises(artifacts.ArtifactError) as refused:
        upload(store, version_dir)

    assert refused.value.reason == STORE_UNREACHABLE
    assert not version_dir.exists()
    store.client = reachable
    with pytest.raises(artifacts.ArtifactError) as absent:
        store.version_dir(manifest["version"], signing_keys=signing_keys())
    assert absent.value.reason == MISSING_MANIFEST
