"""Micro-batching: concurrent predict calls share one vectorizer + classifier call.

Callers on the service's event loop `await batcher.predict(texts)`. The first request of an
idle batcher is computed at once; requests that arrive while a batch is being computed queue up
and go together in the next batch, bounded by `max_size` texts (and, when `max_wait` > 0, by
waiting that long for more company). Every batch uses one model snapshot, so each answer
names the version that produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from algorithm.errors import NoModel
from algorithm.model_cache import ServingModel

Pending = tuple[list[str], asyncio.Future[tuple[list[str], str]]]


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

    async def predict(self, texts: list[str]) -> tuple[list[str], str]:
        """Labels for `texts` and the model version that produced them."""
        if len(texts) >= self._max_size:  # already a batch: no reason to wait for company
            return self._run([texts])[0]
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        future: asyncio.Future[tuple[list[str], str]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, future))
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
            requests = [texts for texts, _ in batch]
            try:
                results = self._run(requests)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _run(self, requests: list[list[str]]) -> list[tuple[list[str], str]]:
        model = self._current_model()
        if model is None:
            raise NoModel()
        flat = [text for texts in requests for text in texts]
        labels = model.predictor.predict_many(flat)
        results, start = [], 0
        for texts in requests:
            results.append((labels[start : start + len(texts)], model.version))
            start += len(texts)
        return results

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
