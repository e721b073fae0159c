"""The web service's settings: environment only, read once."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from core.settings import PredictLimits, RegistryPolicy

PLACEHOLDER_SECRET_KEYS = {"", "change-me", "changeme", "secret", "django-insecure-change-me"}


class WebSettings(PredictLimits, RegistryPolicy):
    """web's own settings; the predict limits and the registry's rules are shared with the other
    services that read them (core/settings.py)."""

    # A refused setting must not print its value (a token, a secret key) into a log.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    django_secret_key: str = ""
    django_debug: bool = False
    django_allowed_hosts: list[str] = ["127.0.0.1", "localhost", "[::1]", "web"]
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    web_workers: int = 2
    algorithm_url: str = "http://127.0.0.1:8001"
    algorithm_timeout_seconds: float = 5.0
    algorithm_connect_retries: int = 2
    page_size_default: int = 50
    page_size_max: int = 1000
    bulk_max_rows: int = 10_000
    text_max_chars: int = 100_000
    import_max_bytes: int = 2 * 1024**3
    access_log: bool = True  # one log line per request (method, route, status, duration, id)
    # How long a token check is cached per process: a revoked token works at most this long.
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=5)
    # While PostgreSQL is unreachable, a token check the database answered this recently is
    # trusted instead (predict keeps working through a restart); 0 refuses with 503 at once.
    auth_outage_grace_seconds: float = Field(default=60.0, ge=0, le=60)
    # How often each process compares the registry (PostgreSQL) with what Redis announces, and
    # announces again when they differ (a move made while Redis was down, an emptied Redis).
    registry_reconcile_seconds: float = Field(default=1.0, ge=0, le=60)
    # Origins browsers may call the API from (JSON list, e.g. ["https://app.example.com"]).
    cors_allowed_origins: list[str] = []

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(
                    f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], no path), e.g. https://app.example.com"
                )
        return origins

    # web's credential at the algorithm service: one of that service's ALGORITHM_TOKENS.
    algorithm_token: str = ""
    # Requests per minute per token (per client address without one), shared by every web
    # process through Redis; 0 turns a scope off. See web/edge/rate_limits.py.
    rate_limit_predict_per_minute: int = 120_000
    rate_limit_reads_per_minute: int = 6_000
    rate_limit_writes_per_minute: int = 600
    rate_limit_train_per_minute: int = 10

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> WebSettings:
        if (
            not self.django_debug
            and self.django_secret_key.strip().lower() in PLACEHOLDER_SECRET_KEYS
        ):
            raise ValueError(
                "DJANGO_SECRET_KEY is missing or a placeholder; set a long random value "
                "(or DJANGO_DEBUG=true for local debugging only)"
            )
        return self

    @model_validator(mode="after")
    def _require_algorithm_token(self) -> WebSettings:
        if not self.django_debug and not self.algorithm_token.strip():
            raise ValueError(
                "ALGORITHM_TOKEN is missing: set it to one of the algorithm service's "
                "ALGORITHM_TOKENS (make run generates one under $VAR_DIR)"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> WebSettings:
    """The process-wide settings object."""
    return WebSettings()
