"""CORS: closed unless CORS_ALLOWED_ORIGINS lists an origin; never sent by the algorithm service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from web.config import WebSettings

APP = "https://app.example.com"
PREFLIGHT = {
    "HTTP_ORIGIN": APP,
    "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
    "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization, content-type",
}


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_by_default_no_origin_gets_cors_headers(api: Any) -> None:
    assert cors_headers(api.get("/api/data/", HTTP_ORIGIN=APP)) == {}
    assert cors_headers(api.options("/api/predict/", **PREFLIGHT)) == {}


@pytest.mark.slow
def test_a_listed_origin_may_call_the_api_with_a_token(
    start_service: Callable[..., str],
    test_database_url: str,
    web_client: Callable[..., httpx.Client],
) -> None:
    url = start_service(
        "web",
        DATABASE_URL=test_database_url,
        ALGORITHM_URL="http://127.0.0.1:9",
        CORS_ALLOWED_ORIGINS=f'["{APP}"]',
    )
    web = web_client(url, role="reader")
    preflight = web.options(
        "/api/predict/",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    listed = web.get("/api/data/", headers={"Origin": APP})
    assert (listed.status_code, listed.headers["Access-Control-Allow-Origin"]) == (200, APP)
    assert cors_headers(web.get("/api/data/", headers={"Origin": "https://evil.example.net"})) == {}
    assert cors_headers(web.get("/health/live", headers={"Origin": APP})) == {}  # the API only


@pytest.mark.parametrize("origin", ["app.example.com", "https://app.example.com/path", "*"])
def test_an_entry_that_is_not_an_origin_is_refused_at_start(origin: str) -> None:
    with pytest.raises(ValidationError, match="CORS_ALLOWED_ORIGINS"):
        WebSettings(django_secret_key="k" * 50, cors_allowed_origins=[origin])


@pytest.mark.slow
def test_the_algorithm_service_sends_no_cors_headers(
    start_service: Callable[..., str], redis_db_url: str, tmp_path: Path
) -> None:
    url = start_service(
        "algorithm",
        REDIS_URL=redis_db_url,
        MODEL_DIR=str(tmp_path / "models"),
        CORS_ALLOWED_ORIGINS=f'["{APP}"]',
    )
    headers = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    for answer in (
        httpx.options(f"{url}/predict", headers=headers, timeout=10),
        httpx.get(f"{url}/health/live", headers={"Origin": APP}, timeout=10),
    ):
        assert cors_headers(answer) == {}
