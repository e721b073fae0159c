"""The algorithm service's settings: environment only, read once."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from core.model_names import DEFAULT_MODEL, InvalidModelName, check_model_name
from core.settings import JobSettings, ModelSigning, ModelStoreSettings, PredictLimits

MIN_TOKEN_CHARS = 16


class AlgorithmSettings(PredictLimits, JobSettings, ModelSigning, ModelStoreSettings):
    """The service's own settings; the predict limits (shared with web), JOB_TTL_SECONDS and
    MODEL_SIGNING_KEY and the model store (shared with the worker) are declared in
    core/settings.py."""

    # A refused setting must not print its value (a token, a secret key) into a log.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    algorithm_host: str = "127.0.0.1"
    algorithm_port: int = 8001
    algorithm_workers: int = os.cpu_count() or 1
    model_poll_ms: int = 500  # the `current` link's stat poll, while no desired state exists
    # The desired state is pushed at once; this poll only catches a lost message.
    desired_poll_ms: int = 1000
    # A predict that finds no model looks for one this long before answering 503 no_model.
    model_check_ms: int = 500
    # Share of live predicted texts the challenger also scores, off the response path; 0: none.
    shadow_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    shadow_queue_size: int = 1000  # queued predictions awaiting the challenger; more are dropped
    batch_max_size: int = 64
    batch_max_wait_ms: float = 0.0  # natural batching only; see docs/benchmarks.md
    predict_max_body_bytes: int = 32 * 1024 * 1024
    # Off by default: web already logs every request with the same id, and at this service's
    # rates a line per prediction costs more than the 5 % observability budget (README).
    algorithm_access_log: bool = False

    # Named models (docs/named-models.md). A process keeps the most recently used models within
    # this many MiB (0: no bound), least recently used unloaded first; pinned names are loaded at
    # start and never unloaded; a cold model's first request waits this long for its load.
    model_memory_budget_mb: int = Field(default=0, ge=0)
    model_pinned: Annotated[tuple[str, ...], NoDecode] = (DEFAULT_MODEL,)
    model_load_wait_seconds: float = Field(default=10.0, ge=0)

    # The service tokens callers must present (web's ALGORITHM_TOKEN is one of them). A list, so
    # a token can be rotated: add the new one, move the callers over, then drop the old one.
    algorithm_tokens: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validate_default=True
    )

    @field_validator("algorithm_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        """`ALGORITHM_TOKENS=old,new`: comma-separated, blanks around each token ignored."""
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("model_pinned", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        """`MODEL_PINNED=default,topic`: comma-separated model names; `default` always pinned."""
        if isinstance(value, str):
            value = tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("model_pinned")
    @classmethod
    def _check_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            try:
                check_model_name(name)
            except InvalidModelName as exc:
                raise ValueError(f"MODEL_PINNED: {name!r}: {exc}") from None
        # `default` is served eagerly as before names existed, listed or not.
        return tuple(dict.fromkeys((DEFAULT_MODEL, *value)))

    @property
    def model_memory_budget_bytes(self) -> int | None:
        """The budget in bytes, None when unbounded."""
        return self.model_memory_budget_mb * 1024 * 1024 or None

    @field_validator("algorithm_tokens")
    @classmethod
    def _require_strong_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Never name the token in the message: it would end up in a log.
        if not value:
            raise ValueError(
                "ALGORITHM_TOKENS is empty: set one or more service tokens, comma-separated "
                "(make run generates one under $VAR_DIR)"
            )
        if any(len(token) < MIN_TOKEN_CHARS for token in value):
            raise ValueError(f"every ALGORITHM_TOKENS entry needs {MIN_TOKEN_CHARS}+ characters")
        return value


@lru_cache(maxsize=1)
def get_settings() -> AlgorithmSettings:
    """The process-wide settings object."""
    return AlgorithmSettings()
