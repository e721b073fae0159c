"""The web service's settings: environment only, read once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from core.settings import PredictLimits, RegistryPolicy

PLACEHOLDER_SECRET_KEYS = {"", "change-me", "changeme", "secret", "django-insecure-change-me"}
# Django's own deployment check asks for at least 50 characters (and 5 distinct ones).
MIN_SECRET_KEY_CHARS = 50


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
    # Replicas behind one name (compose --scale, a headless Service): the name is resolved again
    # this often and calls go to its addresses in turn; a connection is replaced after
    # ALGORITHM_CONNECTION_MAX_SECONDS (0: never), so a proxy balancing connections (a
    # ClusterIP Service) rebalances onto new replicas. See web/proxy/balancer.py.
    algorithm_resolve_seconds: PositiveFloat = 5.0
    algorithm_connection_max_seconds: float = Field(default=30.0, ge=0)
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

    # Every statement on web's database connections ends within this many milliseconds (its
    # query is cancelled and the request answered 503); the COPY of an import or an export gets
    # WEB_TRANSFER_STATEMENT_TIMEOUT_MS instead. Management commands (migrate) run without it.
    web_statement_timeout_ms: PositiveInt = 5000
    web_transfer_statement_timeout_ms: PositiveInt = 1_800_000
    # Django's connection pool, per process (psycopg_pool): connections kept open, the most it
    # opens, and how long a request waits for a free one before it is answered 503.
    web_db_pool_min_size: NonNegativeInt = 1
    web_db_pool_max_size: PositiveInt = 8
    web_db_pool_timeout_seconds: PositiveFloat = 5.0
    # `?search=` terms per request (each one more substring test of every candidate row).
    search_max_terms: PositiveInt = 8
    # Exports running at once, per web process and per token (across processes, through Redis);
    # one more is answered 429. A client that takes nothing for EXPORT_SEND_DEADLINE_SECONDS is
    # disconnected and the export's database connection closed.
    export_max_per_process: PositiveInt = 4
    export_max_per_token: PositiveInt = 2
    export_send_deadline_seconds: PositiveFloat = 30.0
    # Requests per minute per client address without a token (every route but /health/live),
    # and 401 answers per minute per address to requests whose token is refused; beyond either,
    # 429. 0 turns one off. Shared through Redis like the limits above.
    rate_limit_anonymous_per_minute: NonNegativeInt = 600
    rate_limit_rejected_per_minute: NonNegativeInt = 60
    # Failed /admin/login/ attempts allowed per client address and per username within the
    # window; beyond them the login page answers 429 without checking the password.
    admin_login_failures_per_address: NonNegativeInt = 20
    admin_login_failures_per_username: NonNegativeInt = 10
    admin_login_window_minutes: PositiveInt = 15

    # Behind a proxy that ends TLS: cookies only over HTTPS, origins trusted for CSRF (JSON list
    # of https://host), the header that says the original request was HTTPS (opt-in, e.g.
    # X-Forwarded-Proto; only when the proxy always sets it), and HSTS for that long (0: none).
    session_cookie_secure: bool = False
    csrf_cookie_secure: bool = False
    csrf_trusted_origins: list[str] = []
    secure_proxy_ssl_header: str = ""
    secure_hsts_seconds: NonNegativeInt = 0
    secure_hsts_include_subdomains: bool = False
    # The HTTP server of each pool worker (core/pool.py): uvicorn (uvloop, httptools) or Hypercorn.
    # Both keep the pool's guarantees; uvicorn parses HTTP in C and answers predictions faster.
    web_server: Literal["uvicorn", "hypercorn"] = "uvicorn"
    # POST /api/predict/ served beside Django's URL routing, through the same middleware and view
    # (web/proxy/predict_route.py); false: Django's handler serves it like every other route.
    web_fast_predict_route: bool = True

    @field_validator("csrf_trusted_origins")
    @classmethod
    def _trusted_origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"CSRF_TRUSTED_ORIGINS: {origin!r} is not an origin, e.g. https://example.com"
                )
        return origins

    @field_validator("secure_proxy_ssl_header")
    @classmethod
    def _header_name(cls, header: str) -> str:
        header = header.strip()
        if header and not all(part.isalnum() for part in header.split("-")):
            raise ValueError(
                f"SECURE_PROXY_SSL_HEADER: {header!r} is not a header name, e.g. X-Forwarded-Proto"
            )
        return header

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> WebSettings:
        if self.django_debug:
            return self
        key = self.django_secret_key.strip()
        if key.lower() in PLACEHOLDER_SECRET_KEYS:
            raise ValueError(
                "DJANGO_SECRET_KEY is missing or a placeholder; set a long random value "
                "(or DJANGO_DEBUG=true for local debugging only)"
            )
        if len(key) < MIN_SECRET_KEY_CHARS or len(set(key)) < 5:
            raise ValueError(
                f"DJANGO_SECRET_KEY is too short ({len(key)} characters): use at least "
                f"{MIN_SECRET_KEY_CHARS} random characters, e.g. the output of "
                '`python3 -c "import secrets; print(secrets.token_urlsafe(50))"`'
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
