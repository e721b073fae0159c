"""What `make run` needs to know about the services it starts (read from the same environment)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core.settings import CommonSettings


class StackSettings(CommonSettings):
    """What `make run` needs to know about the services it starts."""

    django_secret_key: str = ""  # default: a random key kept in $VAR_DIR
    # Default: a random service token kept in $VAR_DIR, given to web and the algorithm service.
    algorithm_token: str = ""
    algorithm_tokens: str = ""  # passed on as it is (the algorithm service parses the list)
    # Default: a random key kept in $VAR_DIR, given to the worker and the algorithm service.
    model_signing_key: str = ""
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

    @field_validator("var_dir")
    @classmethod
    def _absolute_var_dir(cls, var_dir: Path) -> Path:
        """The default `var` made absolute: every process the stack starts gets the same path,
        whatever directory it works in (PostgreSQL works in its data directory)."""
        return var_dir.absolute()

    def uses_embedded(self, name: str) -> bool:
        """Whether the `name` ("database" or "redis") URL was left to its embedded default."""
        return f"{name}_url" not in self.model_fields_set
