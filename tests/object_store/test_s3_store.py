"""The S3 model store against a real S3 server: immutable versions, exact keys, verified cache."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from algorithm.ml import artifacts
from algorithm.ml.s3_store import ALREADY_STORED, S3Store
from algorithm.ml.signing import UNSIGNED
from algorithm.ml.store import MISSING_MANIFEST, STORE_UNREACHABLE, open_store
from algorithm.ml.training import TrainedModel
from core.harness.scratch import free_port
from tests.helpers import signing_keys
from tests.object_store.conftest import BUCKET, object_bytes, overwrite_object

TEXTS = ["a library for parsing command line options", "a daemon that serves web pages"]
Publish = Callable[[S3Store, TrainedModel], str]


def labels_of(model: TrainedModel) -> list[str]:
    return [str(label) for label in model.classifier.predict(model.vectorizer.transform(TEXTS))]


def load(store: S3Store, version: str) -> artifacts.LoadedVersion:
    directory = store.version_dir(version, signing_keys=signing_keys())
    return artifacts.load_version_dir(directory, signing_keys=signing_keys())


def refusal(store: S3Store, version: str) -> artifacts.ArtifactError:
    with pytest.raises(artifacts.ArtifactError) as refused:
        store.version_dir(version, signing_keys=signing_keys())
    return refused.value


def cache_entries(store: S3Store) -> list[str]:
    directory = store.cache.cache_dir
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def test_a_version_is_downloaded_verified_once_and_served_from_the_cache(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
    s3_client: Any,
) -> None:
    store = open_s3(store_url)
    version = publish_to(store, quick_models[0])

    loaded = load(store, version)
    assert labels_of(loaded.model) == labels_of(quick_models[0])
    assert cache_entries(store) == [version]

    # Gone from the bucket: this host still has its verified copy, and does not ask again.
    store.delete([version])
    assert labels_of(load(store, version).model) == labels_of(quick_models[0])
    # Another host (another cache) finds nothing: the version no longer exists.
    assert refusal(open_s3(store_url, host="other"), version).reason == MISSING_MANIFEST


def test_a_stored_version_is_never_replaced(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
    s3_client: Any,
    tmp_path: Path,
) -> None:
    store = open_s3(store_url)
    version = publish_to(store, quick_models[0])
    manifest_key = store.key(version, artifacts.MANIFEST_FILE)
    before = object_bytes(s3_client, manifest_key)

    with pytest.raises(artifacts.ArtifactError) as again:
        store.publish(tmp_path / "worker-models" / version)
    assert again.value.reason == ALREADY_STORED
    with pytest.raises(ClientError) as conditional:
        s3_client.put_object(Bucket=BUCKET, Key=manifest_key, Body=b"{}", IfNoneMatch="*")
    assert conditional.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert object_bytes(s3_client, manifest_key) == before
    assert load(open_s3(store_url, host="fresh"), version).version == version


def test_keys_are_exact_so_a_sibling_prefix_is_never_fetched(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
) -> None:
    """`model-1` must not pick up what `model-10` holds (a prefix listing would)."""
    model_1, model_10 = open_s3(f"{store_url}/model-1"), open_s3(f"{store_url}/model-10", host="b")
    only_in_10 = publish_to(model_10, quick_models[1])
    in_1 = publish_to(model_1, quick_models[0])

    assert refusal(model_1, only_in_10).reason == MISSING_MANIFEST
    assert labels_of(load(model_1, in_1).model) == labels_of(quick_models[0])
    assert labels_of(load(model_10, only_in_10).model) == labels_of(quick_models[1])
    assert model_1.key(in_1, "model.pickle").endswith(f"/model-1/{in_1}/model.pickle")


@pytest.mark.parametrize("damage", ["truncated", "replaced"])
def test_a_truncated_or_replaced_object_is_refused_and_nothing_is_cached(
    damage: str,
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
    s3_client: Any,
    tmp_path: Path,
) -> None:
    store = open_s3(store_url)
    version, other = publish_to(store, quick_models[0]), publish_to(store, quick_models[1])
    key = store.key(version, artifacts.CLASSIFIER_FILE)
    original = object_bytes(s3_client, key)
    if damage == "truncated":
        overwrite_object(s3_client, key, original[: len(original) // 2])
    else:  # a valid pickle of another version: only the digest tells
        overwrite_object(s3_client, key, object_bytes(s3_client, store.key(other, "model.pickle")))

    refused = refusal(store, version)
    assert refused.reason == artifacts.SHA256_MISMATCH
    assert version in str(refused)
    assert cache_entries(store) == []  # no version, no half-written temporary directory


def test_a_version_without_its_manifest_does_not_exist(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
    s3_client: Any,
) -> None:
    store = open_s3(store_url)
    version = publish_to(store, quick_models[0])
    # An upload that died before its last step: every pickle there, the manifest not.
    s3_client.delete_object(Bucket=BUCKET, Key=store.key(version, artifacts.MANIFEST_FILE))
    assert refusal(store, version).reason == MISSING_MANIFEST
    assert cache_entries(store) == []


def test_a_manifest_nobody_signed_is_refused_before_any_pickle_is_fetched(
    open_s3: Callable[..., S3Store],
    store_url: str,
    quick_models: list[TrainedModel],
    s3_client: Any,
    tmp_path: Path,
) -> None:
    """Whoever can write the bucket, without the key, cannot choose what a replica unpickles."""
    store = open_s3(store_url)
    version = artifacts.new_version_id()
    directory = tmp_path / version
    directory.mkdir()
    digests = artifacts.save_model(quick_models[1], directory)
    manifest = {"version": version, "sha256": digests}
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    store.publish(directory)

    assert refusal(store, version).reason == UNSIGNED
    assert cache_entries(store) == []


def test_an_unreachable_store_is_refused_quickly_as_worth_retrying(
    s3_environment: dict[str, str],
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = open_store(  # as a service opens it, from MODEL_STORE_URL and boto3's variables
        store_url, model_root=tmp_path / "models", cache_dir=tmp_path / "cache", cache_max_bytes=1
    )
    assert isinstance(store, S3Store)
    started = time.monotonic()
    refused = refusal(store, artifacts.new_version_id())
    assert refused.reason == STORE_UNREACHABLE
    assert time.monotonic() - started < 10


def test_a_missing_bucket_is_not_mistaken_for_a_missing_version(
    open_s3: Callable[..., S3Store],
) -> None:
    refused = refusal(open_s3("s3://no-such-bucket-here/models"), artifacts.new_version_id())
    assert refused.reason == STORE_UNREACHABLE and "NoSuchBucket" in str(refused)


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Publish,
    quick_models: list[TrainedModel],
) -> None:
    publisher = open_s3(store_url, host="publisher")
    first, second, third = (publish_to(publisher, quick_models[i % 2]) for i in range(3))
    one_version = max(
        sum(f.stat().st_size for f in load_dir(publisher, v).iterdir()) for v in (first, second)
    )
    store = open_s3(store_url, max_bytes=int(one_version * 2.5))

    load(store, first)
    load(store, second)
    time.sleep(0.01)
    load(store, first)  # used again: now the second is the least recently used
    load(store, third)

    assert cache_entries(store) == sorted([first, third])
    assert store.cache.size_bytes() <= store.cache.max_bytes
    # What a caller keeps (the version it serves) is never dropped, even beyond the bound.
    store.cache.max_bytes = int(one_version * 1.2)
    store.version_dir(second, signing_keys=signing_keys(), keep=[first])
    assert cache_entries(store) == sorted([first, second])


def load_dir(store: S3Store, version: str) -> Path:
    return store.version_dir(version, signing_keys=signing_keys())
