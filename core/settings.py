"""Settings every service shares, read from the environment once (pydantic-settings).

Defaults that depend on other settings (the embedded servers' URLs, the model directory) are
computed from the values already validated, so an unset or empty variable means "the default".

`CommonSettings` is what every service reads. A setting that only some services read is declared
once in a part below, and each service that reads it builds its settings from that part: a
service never validates (or refuses to start over) a variable it does not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.jobs import DEFAULT_JOB_TTL

# The secrets `make run` generates and keeps under $VAR_DIR (owner-only files), by the variable
# each one fills: the harness writes them, `python -m web COMMAND` reads them.
KEPT_SECRET_FILES = {"DJANGO_SECRET_KEY": "django_secret_key", "ALGORITHM_TOKEN": "algorithm_token"}
# MODEL_SIGNING_KEY, which `make run` keeps too, is no web secret: only the worker and the
# algorithm processes get it.
SIGNING_KEY_FILE = "model_signing_key"
MIN_SIGNING_KEY_CHARS = 32

# The passwords `make run` generates for its embedded PostgreSQL and Redis (owner-only files
# under $VAR_DIR), by the URL each one completes (see `url_with_password`).
EMBEDDED_PASSWORD_FILES = {"DATABASE_URL": "postgres-password", "REDIS_URL": "redis-password"}


def url_with_password(url: str, password: str) -> str:
    """`url` (postgresql:// or redis://) with `password` in it, its user kept."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def url_without_password(url: str) -> str:
    """`url` with its password shown as `***`, for printing and logging."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


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
    # Slow and hostile clients (core/pool.py, core/request_body.py): a request header must be
    # whole this many seconds after the connection opened or its last answer went out (also the
    # keep-alive idle time: the server measures both with one clock); a body must arrive within
    # its own deadline; each server process holds at most this many connections, and at most
    # this many bytes of bodies still arriving (their first 64 KiB each aside).
    header_timeout_seconds: PositiveFloat = 5.0
    body_timeout_seconds: PositiveFloat = 30.0
    max_connections_per_worker: PositiveInt = 1000
    body_budget_bytes: PositiveInt = 256 * 1024 * 1024

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


class ModelSigning(CommonSettings):
    """The key that signs each published version's manifest (the worker) and proves it (the
    algorithm service); never on the model volume (algorithm/ml/signing.py)."""

    model_config = SettingsConfigDict(hide_input_in_errors=True)  # never print a key

    # `MODEL_SIGNING_KEY=new,old` while rotating: the first signs, every one verifies.
    model_signing_key: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validate_default=True
    )

    @field_validator("model_signing_key", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("model_signing_key")
    @classmethod
    def _require_strong_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "MODEL_SIGNING_KEY is empty: set the secret that signs model manifests (the same "
                f"in the worker and the algorithm service; make run keeps one in $VAR_DIR/"
                f"{SIGNING_KEY_FILE})"
            )
        if any(len(key) < MIN_SIGNING_KEY_CHARS for key in value):
            raise ValueError(
                f"every MODEL_SIGNING_KEY entry needs {MIN_SIGNING_KEY_CHARS}+ characters"
            )
        return value


class ModelStoreSettings(CommonSettings):
    """Where published versions live (the worker and the algorithm service; see
    algorithm/ml/store.py): empty MODEL_STORE_URL for the model volume at MODEL_DIR, or
    `s3://bucket/prefix` for an S3-compatible store, whose endpoint and credentials boto3 reads
    from its standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    Each host keeps the versions it downloaded, verified, in a bounded cache."""

    model_store_url: str = ""
    model_cache_dir: Path = Field(default_factory=lambda data: data["var_dir"] / "model-cache")
    model_cache_max_mb: PositiveInt = 2048
    # boto3 itself reads AWS_DEFAULT_REGION only; AWS_REGION (what most tools set) wins here.
    aws_region: str = ""

    @field_validator("model_store_url")
    @classmethod
    def _require_s3_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment):
            raise ValueError(
                "MODEL_STORE_URL must be empty (the model volume) or s3://bucket/prefix"
            )
        return value

    @property
    def model_cache_max_bytes(self) -> int:
        return self.model_cache_max_mb * 1024 * 1024
