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


class StackSettings(CommonSettings):
    """What `make run` needs to know about the services it starts."""

    django_secret_key: str = ""  # default: a random key kept in $VAR_DIR
    # Default: a random service token kept in $VAR_DIR, given to web and the algorithm service.
    algorithm_token: str = ""
    algorithm_tokens: str = ""  # passed on as it is (the algorithm service parses the list)
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    algorithm_host: str = "127.0.0.1"
    algorithm_port: int = 8001
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 8002  # the worker's own GET /metrics; 0: none
    # web finds the algorithm service where this stack starts it, unless told otherwise.
    algorithm_url: str = Field(
        default_factory=lambda data: f"http://{data['algorithm_host']}:{data['algorithm_port']}"
    )

    def uses_embedded(self, name: str) -> bool:
        """Whether the `name` ("database" or "redis") URL was left to its embedded default."""
        return f"{name}_url" not in self.model_fields_set
