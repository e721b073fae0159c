"""Shadow scoring: a share of live predictions scored again by the challenger, off their path.

After a response's labels are computed, `offer` samples `fraction` of its texts into a bounded
queue (dropped when full: shadow scoring never slows or fails a prediction) and returns at once.
A background task owned by the runtime scores queued texts with the challenger in a worker
thread and counts how often it agrees with the champion's answer. Counts start again whenever the
champion or the challenger changes, so they always describe the pair being served.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import NamedTuple

from algorithm.service.model_cache import ModelCache
from algorithm.service.observability import record_shadow
from core.serving_protocol import ShadowCounts

log = logging.getLogger(__name__)
MAX_BATCH_TEXTS = 256


class Sample(NamedTuple):
    champion_version: str
    texts: list[str]
    labels: list[str]


class ShadowScorer:
    def __init__(
        self,
        models: ModelCache,
        *,
        fraction: float,
        queue_size: int,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.models = models
        self.fraction = fraction
        self.dropped = 0
        self._chance = chance
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=queue_size)
        self._pair: tuple[str | None, str | None] = (None, None)
        self._compared = 0
        self._agreed = 0
        self._task: asyncio.Task[None] | None = None

    def counts(self) -> ShadowCounts:
        """Agreement so far between the champion and the challenger being served."""
        if self._pair != (self.models.version, self.models.challenger_version):
            return ShadowCounts()
        return ShadowCounts(compared=self._compared, agreed=self._agreed)

    def offer(self, texts: list[str], labels: list[str], champion_version: str) -> None:
        """Queue a `fraction` share of a response's texts for the challenger (never blocks)."""
        if self.models.challenger is None:
            return
        if self.fraction >= 1:
            sample = Sample(champion_version, texts, labels)
        else:
            chosen = [index for index in range(len(texts)) if self._chance() < self.fraction]
            if not chosen:
                return
            sample = Sample(
                champion_version, [texts[i] for i in chosen], [labels[i] for i in chosen]
            )
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._score_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _score_forever(self) -> None:
        while True:
            samples = [await self._queue.get()]
            size = len(samples[0].texts)
            while size < MAX_BATCH_TEXTS and not self._queue.empty():
                samples.append(self._queue.get_nowait())
                size += len(samples[-1].texts)
            try:
                await self._score(samples)
            except Exception:  # a shadow failure must never stop the scorer
                log.exception("shadow scoring failed")

    async def _score(self, samples: list[Sample]) -> None:
        champion, challenger = self.models.current, self.models.challenger
        if champion is None or challenger is None:
            return
        pair = (champion.version, challenger.version)
        if pair != self._pair:
            self._pair, self._compared, self._agreed = pair, 0, 0
        # Answers of a champion swapped out since are not this pair's: skip them.
        current = [sample for sample in samples if sample.champion_version == champion.version]
        texts = [text for sample in current for text in sample.texts]
        if not texts:
            return
        expected = [label for sample in current for label in sample.labels]
        answers = await asyncio.to_thread(challenger.predictor.predict_many, texts)
        if (self.models.version, self.models.challenger_version) != pair:
            return  # the pair changed while we scored: these answers describe neither
        agreed = sum(a == b for a, b in zip(answers, expected, strict=True))
        self._compared += len(texts)
        self._agreed += agreed
        record_shadow(self.models.model, compared=len(texts), agreed=agreed)
