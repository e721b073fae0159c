"""Shadow scoring: the challenger scores a share of live predictions, off the response path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from algorithm.ml.training import TrainedModel, predict_labels
from algorithm.service.model_cache import ModelCache
from algorithm.service.shadow import ShadowScorer
from core import serving_protocol
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired, ShadowCounts
from tests.algorithm.registry_helpers import (
    REPLICAS,
    Announcer,
    Corpus,
    fit_quickly,
    model_metric,
    publish,
    reports,
    wait_until_all_serve,
)
from tests.helpers import signing_keys, wait_until

NAMED = "sentiment"


@pytest.fixture(scope="module")
def models(fixture_corpus: Corpus) -> list[TrainedModel]:
    """Champion and challenger: trained on different thirds, so they disagree now and then."""
    return [fit_quickly(fixture_corpus, slice(start, None, 3)) for start in (0, 1)]


def shadow_total(client: redis.Redis, model: str = DEFAULT_MODEL) -> ShadowCounts:
    """`model`'s shadow counts over every replica's report (a named model's: its own)."""
    counts = [
        r.shadow if model == DEFAULT_MODEL else r.models[model].shadow
        for r in reports(client)
        if model == DEFAULT_MODEL or model in r.models
    ]
    return ShadowCounts(
        compared=sum(c.compared for c in counts), agreed=sum(c.agreed for c in counts)
    )


@pytest.mark.slow
def test_every_prediction_is_shadowed_at_fraction_one_and_agreement_is_exact(
    serve_replicas: Callable[..., str],
    versions: list[str],
    models: list[TrainedModel],
    registry_redis: redis.Redis,
    fixture_corpus: Corpus,
    service_headers: dict[str, str],
) -> None:
    champion, challenger = versions
    Announcer(registry_redis)(champion, challenger)
    # A named model with the same pair the other way round: its counts are its own.
    named = Desired(model=NAMED, champion=challenger, challenger=champion, seq=1)
    serving_protocol.announce(registry_redis, named)
    url = serve_replicas(SHADOW_FRACTION="1")
    for report in wait_until_all_serve(registry_redis, champion, replicas=REPLICAS, timeout=30):
        assert report.challenger == challenger
    texts = [text for text, _ in fixture_corpus[:300]]
    named_texts = texts[:90]

    for start in range(0, len(texts), 30):
        response = httpx.post(
            f"{url}/predict", json={"texts": texts[start : start + 30]}, headers=service_headers
        )
        assert response.json()["model_version"] == champion  # the challenger never answers
    for start in range(0, len(named_texts), 30):
        body = {"model": NAMED, "texts": named_texts[start : start + 30]}
        response = httpx.post(f"{url}/predict", json=body, headers=service_headers)
        assert response.json()["model_version"] == challenger

    def agreeing(among: list[str]) -> int:
        first, second = (predict_labels(model, among) for model in models)
        return sum(a == b for a, b in zip(first, second, strict=True))

    assert 0 < agreeing(texts) < len(texts)  # the checks below tell agreement from disagreement
    # Reports are rewritten every 5 s: the counts arrive within one period.
    expected = {
        DEFAULT_MODEL: ShadowCounts(compared=len(texts), agreed=agreeing(texts)),
        NAMED: ShadowCounts(compared=len(named_texts), agreed=agreeing(named_texts)),
    }
    assert wait_until(
        lambda: {name: shadow_total(registry_redis, name) for name in expected} == expected,
        timeout=10,
        what="counts",
    )
    for name, counts in expected.items():
        assert model_metric(url, "textclf_shadow_compared_total", name) == counts.compared
        assert model_metric(url, "textclf_shadow_agreed_total", name) == counts.agreed


@pytest.mark.slow
def test_fraction_zero_loads_no_challenger_and_counts_nothing(
    serve_replicas: Callable[..., str],
    versions: list[str],
    registry_redis: redis.Redis,
    fixture_corpus: Corpus,
    service_headers: dict[str, str],
) -> None:
    champion, challenger = versions
    Announcer(registry_redis)(champion, challenger)
    url = serve_replicas(SHADOW_FRACTION="0")
    wait_until_all_serve(registry_redis, champion, replicas=REPLICAS, timeout=30)
    texts = [text for text, _ in fixture_corpus[:100]]
    assert (
        httpx.post(f"{url}/predict", json={"texts": texts}, headers=service_headers).status_code
        == 200
    )

    for report in reports(registry_redis):
        assert report.challenger is None and report.shadow == ShadowCounts()


def test_a_share_of_texts_is_sampled_and_a_full_queue_drops_instead_of_waiting(
    model_dir: Path, versions: list[str]
) -> None:
    champion, challenger = versions
    models = ModelCache(model_dir, signing_keys=signing_keys(), keep_challenger=True)
    models.follow(Desired(champion=champion, challenger=challenger, seq=1))
    draws = iter([0.05, 0.5, 0.09, 0.99] * 3)
    scorer = ShadowScorer(models, fraction=0.1, queue_size=2, chance=lambda: next(draws))

    for _ in range(3):
        scorer.offer(["a", "b", "c", "d"], ["x", "y", "z", "w"], champion)

    assert scorer.dropped == 1  # the third offer found the queue full and returned at once

    async def score() -> ShadowCounts:
        await scorer.start()
        try:
            return await asyncio.wait_for(_counted(scorer, 4), timeout=10)
        finally:
            await scorer.aclose()

    assert asyncio.run(score()).compared == 4  # "a" and "c" of two offers: 0.05 and 0.09 < 0.1


async def _counted(scorer: ShadowScorer, compared: int) -> ShadowCounts:
    while (counts := scorer.counts()).compared < compared:
        await asyncio.sleep(0.01)
    return counts


def test_counts_start_again_when_the_challenger_changes(
    model_dir: Path, versions: list[str], models: list[TrainedModel]
) -> None:
    champion, challenger = versions
    cache = ModelCache(model_dir, signing_keys=signing_keys(), keep_challenger=True)
    cache.follow(Desired(champion=champion, challenger=challenger, seq=1))
    scorer = ShadowScorer(cache, fraction=1.0, queue_size=10)

    async def scenario() -> tuple[ShadowCounts, ShadowCounts]:
        await scorer.start()
        try:
            scorer.offer(["Python", "kernel"], ["x", "y"], champion)
            before = await asyncio.wait_for(_counted(scorer, 2), timeout=10)
            third = publish(model_dir, models[0])
            cache.follow(Desired(champion=champion, challenger=third, seq=2))
            return before, scorer.counts()
        finally:
            await scorer.aclose()

    before, after = asyncio.run(scenario())
    assert before.compared == 2 and after == ShadowCounts()
