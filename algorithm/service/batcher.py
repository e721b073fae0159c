"""Micro-batching: concurrent predict calls share one vectorizer + classifier call.

Callers on the service's event loop `await batcher.predict(texts)`. The first request of an
idle batcher is computed at once; requests that arrive while a batch is being computed queue up
and go together in the next batch, bounded by `max_size` texts (and, when `max_wait` > 0, by
waiting that long for more company). Every batch uses one model snapshot, so each answer
names the version that produced it, and a request with `top_k` gets its labels and scores from
that same snapshot.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import NamedTuple

from algorithm.service.errors import ApiError, BadRequest, NoModel
from algorithm.service.model_cache import ServingModel
from algorithm.service.observability import record_batch, record_predictions

Ranked = list[tuple[str, float]]


class Prediction(NamedTuple):
    labels: list[str]
    version: str
    scores: list[Ranked] | None = None  # with top_k: per text, its k best labels and scores


Request = tuple[list[str], int | None]  # texts, top_k
Pending = tuple[list[str], int | None, asyncio.Future[Prediction]]


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], ServingModel | None],
        *,
        max_size: int,
        max_wait: float,
    ) -> None:
        self._current_model = current_model
        self._max_size = max_size
        self._max_wait = max_wait
        self._queue: asyncio.Queue[Pending] | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def predict(self, texts: list[str], top_k: int | None = None) -> Prediction:
        """Labels for `texts` (and their `top_k` best scores) and the model version used."""
        if len(texts) >= self._max_size:  # already a batch: no reason to wait for company
            if top_k is None:
                return _unwrap(self._run([(texts, None)])[0])
            # Scoring builds k Python tuples per text: a big batch is scored off the event loop.
            return _unwrap((await asyncio.to_thread(self._run, [(texts, top_k)]))[0])
        if self._queue is None:
            self._queue = asyncio.Queue()
            # A context of its own: batches serve many requests, not the one that started it.
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, top_k, future))
        return await future

    async def _drain(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self._max_wait
            # Requests that queued while the last batch ran join this one, up to max_size texts;
            # with max_wait > 0 we also wait that long for more to arrive.
            while size < self._max_size:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                batch.append(item)
                size += len(item[0])
            try:
                results = self._run([(texts, top_k) for texts, top_k, _ in batch])
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, ApiError):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _run(self, requests: list[Request]) -> list[Prediction | ApiError]:
        model = self._current_model()
        if model is None:
            raise NoModel()
        if all(top_k is None for _, top_k in requests):  # the common case: labels only
            return _predict_group(model, requests, None)
        # One predictor call per distinct top_k (None: labels only), all on this one snapshot.
        groups: dict[int | None, list[int]] = {}
        for index, (_, top_k) in enumerate(requests):
            groups.setdefault(top_k, []).append(index)
        results: dict[int, Prediction | ApiError] = {}
        for top_k, indices in groups.items():
            answers = _predict_group(model, [requests[index] for index in indices], top_k)
            results.update(zip(indices, answers, strict=True))
        return [results[index] for index in range(len(requests))]

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)


def _predict_group(
    model: ServingModel, requests: list[Request], top_k: int | None
) -> list[Prediction | ApiError]:
    """Answers for requests that share one top_k, in order."""
    texts = [text for texts, _ in requests for text in texts]
    record_batch(len(texts))
    if top_k is None:
        labels = model.predictor.predict_many(texts)
        record_predictions(requests=len(requests), texts=len(texts))
        return _split(requests, lambda start, end: Prediction(labels[start:end], model.version))
    if top_k > model.label_count:
        problem = f"must be at most {model.label_count}, the labels of model {model.version}"
        return [
            BadRequest(f"top_k: {problem}.", code="validation_error", fields={"top_k": [problem]})
            for _ in requests
        ]
    ranked = model.predictor.top_k(texts, top_k)
    record_predictions(requests=len(requests), texts=len(texts))

    def scored(start: int, end: int) -> Prediction:
        scores = ranked[start:end]
        # The best-scored label is the predicted one (predictor.rank_top_k ranks by the decisions).
        return Prediction([best[0][0] for best in scores], model.version, scores)

    return _split(requests, scored)


def _split(
    requests: list[Request], answer: Callable[[int, int], Prediction]
) -> list[Prediction | ApiError]:
    """One answer per request, from its slice of the flattened texts."""
    results: list[Prediction | ApiError] = []
    start = 0
    for texts, _ in requests:
        results.append(answer(start, start + len(texts)))
        start += len(texts)
    return results


def _unwrap(result: Prediction | ApiError) -> Prediction:
    if isinstance(result, ApiError):
        raise result
    return result
