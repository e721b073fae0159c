"""Settings every service shares, read from the environment once (pydantic-settings).

Defaults that depend on other settings (the embedded servers' URLs, the model directory) are
computed from the values already validated, so an unset or empty variable means "the default".

`CommonSettings` is what every service reads. A setting that only some services read is declared
once in a part below, and each service that reads it builds its settings from that part: a
service never validates (or refuses to start over) a variable it does not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.jobs import DEFAULT_JOB_TTL

# The secrets `make run` generates and keeps under $VAR_DIR (owner-only files), by the variable
# each one fills: the harness writes them, `python -m web COMMAND` reads them.
KEPT_SECRET_FILES = {"DJANGO_SECRET_KEY": "django_secret_key", "ALGORITHM_TOKEN": "algorithm_token"}


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


class PredictLimits(CommonSettings):
    """What one POST /predict may hold: the algorithm service's limits, which web checks a body
    against before the hop (web and the algorithm service)."""

    predict_max_texts: int = 1000
    predict_max_chars: int = 100_000
    # The characters of one request in all: 1 000 texts of 10 000 characters (long articles)
    # fit, and labelling that much costs about a second of one core, where texts x chars alone
    # would let one request ask for 100 M characters (docs/benchmarks.md "Hostile input").
    predict_max_total_chars: PositiveInt = 10_000_000
    # The most labels `top_k` may rank per text (and never more than the served model has):
    # each ranked label is built per text, and a longer list is noise to whoever reads it.
    predict_max_top_k: PositiveInt = 100


class RegistryPolicy(CommonSettings):
    """The registry's rules (web and the worker).

    A champion move must pass the gate within `promotion_tolerance` (the worker's gate after a
    training; web's hand-made moves). The last `model_retention` champions cannot be deleted, and
    the worker removes a version's files only when it is both deleted and beyond them.
    """

    promotion_tolerance: NonNegativeFloat = 0.01
    model_retention: PositiveInt = 5


class JobSettings(CommonSettings):
    """How long a training job's state is kept in Redis (the algorithm service creates jobs,
    the worker runs them; see core/jobs.py)."""

    job_ttl_seconds: PositiveInt = DEFAULT_JOB_TTL
