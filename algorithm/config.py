"""The algorithm service's settings: environment only, read once."""

from __future__ import annotations

import os
from functools import lru_cache

from stack.config import CommonSettings


class AlgorithmSettings(CommonSettings):
    algorithm_host: str = "127.0.0.1"
    algorithm_port: int = 8001
    algorithm_workers: int = os.cpu_count() or 1
    model_poll_ms: int = 500
    batch_max_size: int = 64
    batch_max_wait_ms: float = 0.0  # natural batching only; see docs/benchmarks.md
    predict_max_texts: int = 1000
    predict_max_chars: int = 100_000
    predict_max_body_bytes: int = 32 * 1024 * 1024
    # Off by default: web already logs every request with the same id, and at this service's
    # rates a line per prediction costs more than the 5 % observability budget (README).
    algorithm_access_log: bool = False


@lru_cache(maxsize=1)
def get_settings() -> AlgorithmSettings:
    """The process-wide settings object."""
    return AlgorithmSettings()
