"""The worker's main process keeps `current` on the registry's champion."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from core import serving_protocol
from core.serving_protocol import Desired
from tests.algorithm.registry_helpers import Corpus, fit_quickly, publish
from tests.helpers import wait_until
from worker.link_follower import mirror_champion


@pytest.fixture
def versions(model_dir: Path, fixture_corpus: Corpus) -> list[str]:
    """Two published versions, oldest first; `current` names the newest."""
    model = fit_quickly(fixture_corpus, slice(0, None, 3))
    return [publish(model_dir, model), publish(model_dir, model)]


def current(model_dir: Path) -> str:
    return os.readlink(model_dir / "current")


def test_mirror_points_current_at_a_present_champion_only(
    model_dir: Path, versions: list[str]
) -> None:
    old, new = versions
    assert mirror_champion(model_dir, Desired(champion=old, seq=1)) is True
    assert current(model_dir) == old
    assert mirror_champion(model_dir, Desired(champion=old, seq=2)) is False  # already there

    for champion in ("../elsewhere", "20990101T000000000000Z-0badf00d", None):
        assert mirror_champion(model_dir, Desired(champion=champion, seq=3)) is False
        assert current(model_dir) == old
    assert mirror_champion(model_dir, None) is False
    assert current(model_dir) == old


@pytest.mark.slow
def test_a_starting_worker_mirrors_the_champion_then_follows_moves(
    start_worker: Callable[..., Any], redis_db_url: str, model_dir: Path, versions: list[str]
) -> None:
    old, new = versions
    with redis.Redis.from_url(redis_db_url, decode_responses=True) as client:
        client.set(serving_protocol.DESIRED_KEY, Desired(champion=old, seq=1).model_dump_json())
        start_worker()  # no message: it reads the desired state when it starts
        wait_until(lambda: current(model_dir) == old, timeout=5, what="`current` on champion")

        announced = time.monotonic()
        serving_protocol.announce(client, Desired(champion=new, seq=2))
        wait_until(lambda: current(model_dir) == new, timeout=2, interval=0.01, what="the move")
        assert time.monotonic() - announced < 2
