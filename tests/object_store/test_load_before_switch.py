"""A replica's model cache with the object store: the old model serves until the new one is
downloaded, verified and loaded; a store that stops answering only delays the switch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from algorithm.ml.s3_store import S3Store, make_client
from algorithm.ml.training import TrainedModel
from algorithm.service.model_cache import ModelCache
from core.harness.scratch import free_port
from core.serving_protocol import Desired
from tests.helpers import signing_keys


def test_an_unreachable_store_keeps_the_old_model_until_it_answers_again(
    open_s3: Callable[..., S3Store],
    store_url: str,
    publish_to: Callable[[S3Store, TrainedModel], str],
    quick_models: list[TrainedModel],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = open_s3(store_url)
    old, new = publish_to(store, quick_models[0]), publish_to(store, quick_models[1])
    models = ModelCache(tmp_path / "no-volume", signing_keys=signing_keys(), store=store)
    models.follow(Desired(champion=old, seq=1))
    assert models.version == old and models.started

    reachable = store.client
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store.client = make_client()  # the same bucket, now unreachable
    announced = Desired(champion=new, seq=2)
    models.follow(announced)
    assert models.version == old  # still serving
    assert models.error_version == new and "does not answer" in (models.last_error or "")
    assert not models.started  # GET /health/started: 503 model_loading

    store.client = reachable  # it answers again: the next look loads it, no new announcement
    models.follow(announced)
    assert models.version == new and models.last_error is None and models.started
