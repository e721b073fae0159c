"""Login and anonymous traffic are limited; what anonymous callers see, against a live web service.

One `python -m web` for the module, with small limits and the TLS switches on. The limits are
counted per client address, and every request of the tests comes from 127.0.0.1: each test
starts from an empty Redis database, and the tests that leave the address refused in the
server's memory come last.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from pydantic import ValidationError

from core.harness.scratch import free_port
from tests.helpers import assert_error, bearer
from web.config import WebSettings

ANONYMOUS_PER_MINUTE = 40
REJECTED_PER_MINUTE = 5
LOGIN_FAILURES_PER_ADDRESS = 2
LOGIN_FAILURES_PER_USERNAME = 1
TRUSTED_ORIGIN = "https://app.example.com"
# The live service needs the migrated test database, which is made for the tests that ask for it.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def web_url(
    start_module_service: Callable[..., str], test_database_url: str, module_redis_url: str
) -> str:
    return start_module_service(
        "web",
        DATABASE_URL=test_database_url,
        REDIS_URL=module_redis_url,
        RATE_LIMIT_ANONYMOUS_PER_MINUTE=str(ANONYMOUS_PER_MINUTE),
        RATE_LIMIT_REJECTED_PER_MINUTE=str(REJECTED_PER_MINUTE),
        ADMIN_LOGIN_FAILURES_PER_ADDRESS=str(LOGIN_FAILURES_PER_ADDRESS),
        ADMIN_LOGIN_FAILURES_PER_USERNAME=str(LOGIN_FAILURES_PER_USERNAME),
        SESSION_COOKIE_SECURE="true",
        CSRF_COOKIE_SECURE="true",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_HSTS_SECONDS="31536000",
        CSRF_TRUSTED_ORIGINS=f'["{TRUSTED_ORIGIN}"]',
        ALGORITHM_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )


@pytest.fixture(autouse=True)
def fresh_counts(module_redis_url: str) -> None:
    with redis.Redis.from_url(module_redis_url) as client:
        client.flushdb()


@pytest.fixture
def web(web_url: str) -> Any:
    with httpx.Client(base_url=web_url, timeout=10) as client:
        yield client


def test_the_schema_is_built_once_and_served_from_memory(web: httpx.Client) -> None:
    began = time.perf_counter()
    first = web.get("/api/schema/")
    built = time.perf_counter() - began
    began = time.perf_counter()
    second = web.get("/api/schema/")
    served = time.perf_counter() - began
    assert first.status_code == second.status_code == 200
    assert first.content == second.content  # (a rebuilt schema differed from call to call)
    assert served < built / 3, (built, served)


def test_ready_says_which_check_failed_and_nothing_more(web: httpx.Client) -> None:
    ready = web.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "algorithm": "failed"},
    }


def test_tls_switches_from_the_environment(web: httpx.Client) -> None:
    over_https = web.get("/health/live", headers={"X-Forwarded-Proto": "https"})
    assert over_https.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in web.get("/health/live").headers  # plain HTTP
    assert "; secure" in web.get("/admin/login/").headers["Set-Cookie"].lower()
    https = {"X-Forwarded-Proto": "https"}
    from_app = login(web, "from-app", headers={**https, "Origin": TRUSTED_ORIGIN})
    assert from_app.status_code == 200  # past the CSRF check: the form, with its error
    elsewhere = login(
        web, "from-elsewhere", headers={**https, "Origin": "https://evil.example.net"}
    )
    assert elsewhere.status_code == 403


def test_a_short_secret_key_is_refused_without_printing_it() -> None:
    short = "s3cr3t-but-only-32-characters-xx"
    with pytest.raises(ValidationError) as refused:
        WebSettings(django_secret_key=short, django_debug=False, algorithm_token="t" * 32)
    assert "DJANGO_SECRET_KEY is too short (32 characters)" in str(refused.value)
    assert short not in str(refused.value)
    WebSettings(django_secret_key=short, django_debug=True)  # local debugging only


def login(web: httpx.Client, username: str, **request: Any) -> httpx.Response:
    """A login attempt with a wrong password, through the login form (its CSRF token too)."""
    page = web.get("/admin/login/")
    token = re.search(r"csrftoken=([^;]+)", page.headers["Set-Cookie"])
    assert token is not None
    headers = {"Cookie": f"csrftoken={token[1]}", **request.pop("headers", {})}
    return web.post(
        "/admin/login/",
        data={"username": username, "password": "wrong", "csrfmiddlewaretoken": token[1]},
        headers=headers,  # the cookie is Secure: httpx would keep it for HTTPS
        **request,
    )


def test_failed_admin_logins_are_limited_per_username_and_per_address(web: httpx.Client) -> None:
    for _ in range(LOGIN_FAILURES_PER_USERNAME):
        assert login(web, "alice").status_code == 200  # the form again, with its error
    by_name = assert_error(login(web, "ALICE"), 429, "rate_limited")
    assert "username" in by_name["detail"]
    assert login(web, "bob").status_code == 200  # the address's second failure
    by_address = login(web, "dave")
    assert "address" in assert_error(by_address, 429, "rate_limited")["detail"]
    assert int(by_address.headers["Retry-After"]) >= 1


def test_refused_tokens_are_limited_per_address(web: httpx.Client) -> None:
    bad = bearer("tcf_not-a-token-of-this-service")
    answers = [
        web.get("/api/data/", headers=bad).status_code for _ in range(REJECTED_PER_MINUTE + 2)
    ]
    assert answers[:REJECTED_PER_MINUTE] == [401] * REJECTED_PER_MINUTE
    refused = web.get("/api/data/", headers=bad)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1


def test_anonymous_calls_are_limited_per_address(web: httpx.Client) -> None:
    answers = [web.get("/api/schema/") for _ in range(ANONYMOUS_PER_MINUTE + 1)]
    assert [a.status_code for a in answers[:ANONYMOUS_PER_MINUTE]] == [200] * ANONYMOUS_PER_MINUTE
    assert_error(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert web.get("/health/live").status_code == 200  # probes are never refused
