"""One loaded model name: its model cache, its own batchers and shadow scorer, and its use.

A model's batcher coalesces concurrent requests for that model only (each answer names the
version that produced it); `users` counts requests inside it, so the pool never unloads a model
a request is using.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from algorithm.service.batcher import MicroBatcher
from algorithm.service.config import AlgorithmSettings
from algorithm.service.model_cache import ModelCache
from algorithm.service.shadow import ShadowScorer
from core.serving_protocol import ModelReport, ShadowCounts


@dataclass(eq=False)
class ServedModel:
    """One loaded model name: its versions, its batchers and how it is being used."""

    name: str
    cache: ModelCache
    batcher: MicroBatcher
    challenger_batcher: MicroBatcher  # /v2 calls naming the challenger (max_size 1: no task)
    pinned: bool
    shadow: ShadowScorer | None = None
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0  # requests inside its batcher now: never unloaded while > 0

    def report(self) -> ModelReport:
        cache = self.cache
        idle = time.monotonic() - self.last_used
        return ModelReport(
            version=cache.version,
            challenger=cache.challenger_version,
            error=cache.last_error,
            error_version=cache.error_version,
            loaded_at=cache.loaded_at,
            memory_bytes=cache.memory_bytes,
            last_used_at=datetime.fromtimestamp(time.time() - idle, UTC).isoformat(),
            pinned=self.pinned,
            shadow=self.shadow.counts() if self.shadow is not None else ShadowCounts(),
        )


def serve(
    cache: ModelCache, settings: AlgorithmSettings, *, pinned: bool, shadow: ShadowScorer | None
) -> ServedModel:
    """`cache` served with batchers of its own (and its shadow scorer, if any)."""
    return ServedModel(
        name=cache.model,
        cache=cache,
        batcher=MicroBatcher(
            lambda: cache.current,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
            model=cache.model,
        ),
        challenger_batcher=MicroBatcher(
            lambda: cache.challenger, max_size=1, max_wait=0, model=cache.model
        ),
        pinned=pinned,
        shadow=shadow,
    )
