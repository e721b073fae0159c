"""The web service's settings: environment only, read once."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator

from stack.config import CommonSettings

PLACEHOLDER_SECRET_KEYS = {"", "change-me", "changeme", "secret", "django-insecure-change-me"}


class WebSettings(CommonSettings):
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
    predict_max_texts: int = 1000
    predict_max_chars: int = 100_000
    import_max_bytes: int = 2 * 1024**3
    # The registry: a hand-made champion move must pass the gate within this tolerance, and
    # the last MODEL_RETENTION champions cannot be deleted.
    promotion_tolerance: float = Field(default=0.01, ge=0)
    model_retention: int = Field(default=5, ge=1)

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


@lru_cache(maxsize=1)
def get_settings() -> WebSettings:
    """The process-wide settings object."""
    return WebSettings()
