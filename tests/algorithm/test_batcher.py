"""The micro-batcher: concurrent predictions share one model call; a lone one is not queued."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from prometheus_client import REGISTRY

from algorithm.ml.predictor import FastPredictor
from algorithm.ml.training import TrainedModel, predict_labels
from algorithm.service.batcher import MicroBatcher
from algorithm.service.model_cache import ServingModel

_names = itertools.count()


@pytest.fixture
def model_name() -> str:
    """A model name of the test's own: the model calls counted under it are the test's."""
    return f"batcher-test-{next(_names)}"


@pytest.fixture
def batcher(model: TrainedModel, model_name: str) -> MicroBatcher:
    serving = ServingModel(version="v1", manifest={}, predictor=FastPredictor(model))
    return MicroBatcher(lambda: serving, max_size=64, max_wait=0.0, model=model_name)


def model_calls(model_name: str) -> float:
    """The model calls counted in `textclf_model_predict_batch_size` (texts per call)."""
    labels = {"model": model_name}
    found = REGISTRY.get_sample_value("textclf_model_predict_batch_size_count", labels)
    return found or 0.0


def texts_of(corpus: list[dict[str, str]], count: int) -> list[str]:
    return [row["text"] for row in corpus[:count]]


def test_concurrent_predictions_share_one_model_call(
    batcher: MicroBatcher,
    model: TrainedModel,
    model_name: str,
    corpus: list[dict[str, str]],
) -> None:
    texts = texts_of(corpus, 8)

    async def predict_together() -> list[str]:
        try:
            answers = await asyncio.gather(*(batcher.predict([text]) for text in texts))
        finally:
            await batcher.close()
        return [answer.labels[0] for answer in answers]

    assert asyncio.run(predict_together()) == predict_labels(model, texts)
    assert model_calls(model_name) == 1


def test_a_lone_prediction_is_answered_without_waiting_for_the_loop(
    batcher: MicroBatcher,
    model: TrainedModel,
    model_name: str,
    corpus: list[dict[str, str]],
) -> None:
    text = texts_of(corpus, 1)[0]

    async def predict_alone() -> None:
        # Run the coroutine by hand: it must finish at its first step, never suspending.
        step = batcher.predict([text], alone=True)
        with pytest.raises(StopIteration) as done:
            step.send(None)
        assert done.value.value.labels == predict_labels(model, [text])
        await batcher.close()

    asyncio.run(predict_alone())
    assert model_calls(model_name) == 1


def test_a_lone_prediction_joins_the_batch_already_queued(
    batcher: MicroBatcher,
    model: TrainedModel,
    model_name: str,
    corpus: list[dict[str, str]],
) -> None:
    texts = texts_of(corpus, 4)

    async def predict_queued_then_alone() -> list[str]:
        queued = [asyncio.ensure_future(batcher.predict([text])) for text in texts[:3]]
        await asyncio.sleep(0)  # the three are queued, their batch not computed yet
        try:
            last = await batcher.predict([texts[3]], alone=True)
            return [(await answer).labels[0] for answer in queued] + last.labels
        finally:
            await batcher.close()

    assert asyncio.run(predict_queued_then_alone()) == predict_labels(model, texts)
    assert model_calls(model_name) == 1
