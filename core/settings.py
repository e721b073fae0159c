"""Settings every service shares, read from the environment once (pydantic-settings).

Defaults that depend on other settings (the embedded servers' URLs, the model directory) are
computed from the values already validated, so an unset or empty variable means "the default".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Where state lives and how to reach the shared servers."""

    # An empty variable (`DATABASE_URL=` in a .env file) falls back to the default.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    var_dir: Path = Path("var")
    # Ports of the embedded servers `make run` starts when the URLs below are not set.
    embedded_postgres_port: int = 54329
    embedded_redis_port: int = 63799
    database_url: str = Field(
        default_factory=lambda data: (
            f"postgresql://postgres@127.0.0.1:{data['embedded_postgres_port']}/textclf"
        )
    )
    redis_url: str = Field(
        default_factory=lambda data: f"redis://127.0.0.1:{data['embedded_redis_port']}/0"
    )
    model_dir: Path = Field(default_factory=lambda data: data["var_dir"] / "models")
    # Observability (README "Observability"): log lines as text or one JSON object each, and an
    # optional bearer token that every /metrics then requires.
    log_format: Literal["text", "json"] = "text"
    metrics_token: str = ""

    @property
    def metrics_root(self) -> Path:
        """Where each server pool keeps its processes' metric files (one directory per pool)."""
        return self.var_dir / "metrics"

    @property
    def model_root(self) -> Path:
        """The model directory (the name the artifact code uses)."""
        return self.model_dir
