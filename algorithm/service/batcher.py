"""Micro-batching: concurrent predict calls share one vectorizer + classifier call.

Callers on the service's event loop `await batcher.predict(texts)`. The first request of an
idle batcher is computed at once (without even queueing when no other request is being
answered); requests that arrive while a batch is being computed queue up and go together in the
next batch, bounded by `max_size` texts (and, when `max_wait` > 0, by waiting that long for
more company). Every batch uses one model snapshot, so each answer names the version that
produced it, and a request with `top_k` gets its labels and scores from that same snapshot.

A batch of more than `OFFLOAD_CHARS` characters is computed in one worker thread instead, in
chunks of about `CHUNK_CHARS` characters that hand the GIL back between them, so the loop keeps
serving other requests (probes included) while it runs; large batches take turns in that thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

from algorithm.service.errors import ApiError, BadRequest, NoModel
from algorithm.service.model_cache import ServingModel
from algorithm.service.observability import ModelCallMetrics
from core.model_names import DEFAULT_MODEL

Ranked = list[tuple[str, float]]
T = TypeVar("T")
# Up to this many characters a batch is computed on the loop: about 10 ms of work, less than a
# thread hand-off would add to it (a body of 1 000 short texts stays here).
OFFLOAD_CHARS = 100_000
# Off the loop, the predictor is called on chunks of this many characters (~25 ms each): big
# enough for its matrix path (smaller chunks of long texts cost up to 20 % more in all); the
# loop still gets the GIL between texts within a chunk (SWITCH_INTERVAL).
CHUNK_CHARS = 256_000
SWITCH_INTERVAL = 0.0005  # seconds; see _share_the_gil_often


class Prediction(NamedTuple):
    labels: list[str]
    version: str
    scores: list[Ranked] | None = None  # with top_k: per text, its k best labels and scores


Request = tuple[list[str], int | None]  # texts, top_k
Pending = tuple[list[str], int | None, asyncio.Future[Prediction], int]  # ..., characters


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], ServingModel | None],
        *,
        max_size: int,
        max_wait: float,
        model: str = DEFAULT_MODEL,
    ) -> None:
        self._current_model = current_model
        self._metrics = ModelCallMetrics(model)
        self._max_size = max_size
        self._max_wait = max_wait
        self._queue: asyncio.Queue[Pending] | None = None
        self._drainer: asyncio.Task[None] | None = None
        # One thread: large batches take turns, and the loop's thread competes with one only.
        self._large = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="predict-large", initializer=_share_the_gil_often
        )

    async def predict(
        self, texts: list[str], top_k: int | None = None, *, alone: bool = False
    ) -> Prediction:
        """Labels for `texts` (and their `top_k` best scores) and the model version used.

        `alone`: the caller's request is the only one its process is answering, so no other
        could join its batch; with nothing queued (and no `max_wait`) it is computed at once,
        without the trip through the queue and the batching task.
        """
        chars = sum(map(len, texts))
        if len(texts) >= self._max_size or chars > OFFLOAD_CHARS:  # no reason to wait for company
            # Scoring builds k Python tuples per text: a big batch with top_k goes off the loop.
            if chars > OFFLOAD_CHARS or top_k is not None:
                return _unwrap((await self._off_loop([(texts, top_k)]))[0])
            return _unwrap(self._run([(texts, None)])[0])
        if alone and self._max_wait <= 0 and (self._queue is None or self._queue.empty()):
            return _unwrap(self._run([(texts, top_k)])[0])
        if self._queue is None:
            self._queue = asyncio.Queue()
            # A context of its own: batches serve many requests, not the one that started it.
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, top_k, future, chars))
        return await future

    async def off_loop(self, work: Callable[[], T]) -> T:
        """`work()`, in the thread that computes large batches (other large work waits its turn)."""
        return await asyncio.get_running_loop().run_in_executor(self._large, work)

    async def _off_loop(self, requests: list[Request]) -> list[Prediction | ApiError]:
        return await self.off_loop(functools.partial(self._run, requests, CHUNK_CHARS))

    async def _drain(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size, chars = len(batch[0][0]), batch[0][3]
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
                chars += item[3]
            requests = [(texts, top_k) for texts, top_k, *_ in batch]
            try:
                # Many long single texts add up: past OFFLOAD_CHARS they go to the thread too.
                if chars > OFFLOAD_CHARS:
                    results = await self._off_loop(requests)
                else:
                    results = self._run(requests)
            except Exception as exc:
                for _, _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future, _), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, ApiError):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _run(
        self, requests: list[Request], chunk_chars: int | None = None
    ) -> list[Prediction | ApiError]:
        """Answers on one model snapshot; with `chunk_chars`, the predictor is called in chunks."""
        model = self._current_model()
        if model is None:
            raise NoModel()
        if all(top_k is None for _, top_k in requests):  # the common case: labels only
            return _predict_group(model, requests, None, chunk_chars, self._metrics)
        # One predictor call per distinct top_k (None: labels only), all on this one snapshot.
        groups: dict[int | None, list[int]] = {}
        for index, (_, top_k) in enumerate(requests):
            groups.setdefault(top_k, []).append(index)
        results: dict[int, Prediction | ApiError] = {}
        for top_k, indices in groups.items():
            answers = _predict_group(
                model, [requests[index] for index in indices], top_k, chunk_chars, self._metrics
            )
            results.update(zip(indices, answers, strict=True))
        return [results[index] for index in range(len(requests))]

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._large.shutdown(wait=False, cancel_futures=True)


def _predict_group(
    model: ServingModel,
    requests: list[Request],
    top_k: int | None,
    chunk_chars: int | None,
    metrics: ModelCallMetrics,
) -> list[Prediction | ApiError]:
    """Answers for requests that share one top_k, in order."""
    texts = [text for texts, _ in requests for text in texts]
    metrics.record_batch(len(texts))
    if top_k is None:
        if chunk_chars is None:
            labels = model.predictor.predict_many(texts)
        else:
            labels = _in_chunks(model.predictor.predict_many, texts, chunk_chars)
        metrics.record_predictions(requests=len(requests), texts=len(texts))
        return _split(requests, lambda start, end: Prediction(labels[start:end], model.version))
    if top_k > model.label_count:
        problem = f"must be at most {model.label_count}, the labels of model {model.version}"
        return [
            BadRequest(f"top_k: {problem}.", code="validation_error", fields={"top_k": [problem]})
            for _ in requests
        ]
    if chunk_chars is None:
        ranked = model.predictor.top_k(texts, top_k)
    else:
        ranked = _in_chunks(lambda chunk: model.predictor.top_k(chunk, top_k), texts, chunk_chars)
    metrics.record_predictions(requests=len(requests), texts=len(texts))

    def scored(start: int, end: int) -> Prediction:
        scores = ranked[start:end]
        # The best-scored label is the predicted one (predictor.rank_top_k ranks by the decisions).
        return Prediction([best[0][0] for best in scores], model.version, scores)

    return _split(requests, scored)


def _share_the_gil_often() -> None:
    """A thread that wants the GIL gets it within SWITCH_INTERVAL instead of Python's 5 ms.

    Process-wide, but it only matters while two threads want the GIL: the event loop's and the
    one computing a large batch. Each of the loop's iterations waits for the GIL once.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


def _in_chunks(
    compute: Callable[[list[str]], list[T]], texts: list[str], chunk_chars: int
) -> list[T]:
    """`compute(texts)`, called on consecutive chunks; the GIL is offered between chunks."""
    results: list[T] = []
    for chunk in _chunks(texts, chunk_chars):
        results += compute(chunk)
        time.sleep(0)  # a waiting thread (the event loop's) takes the GIL now, not in 5 ms
    return results


def _chunks(texts: list[str], chunk_chars: int) -> Iterator[list[str]]:
    """Consecutive runs of `texts` of about `chunk_chars` characters (at least one text each)."""
    start, chars = 0, 0
    for end, text in enumerate(texts, 1):
        chars += len(text)
        if chars >= chunk_chars:
            yield texts[start:end]
            start, chars = end, 0
    if start < len(texts):
        yield texts[start:]


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
