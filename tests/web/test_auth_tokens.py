"""Tokens as users and operators meet them: 401s, revocation and expiry on a live server,
secrets stored hashed and never echoed or logged, and the management commands."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.helpers import assert_error, bearer, wait_until
from tests.web.conftest import LiveWeb
from web.auth.check import TokenCache
from web.auth.models import ApiToken
from web.auth.roles import Role
from web.auth.tokens import digest_of, issue_token, revoke_token

REVOCATION_LIMIT_SECONDS = 5  # the spec's bound; the cache keeps an answer AUTH_CACHE_SECONDS (2)


def rows(api_url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{api_url}/api/data/", headers=headers, timeout=10)


def test_no_token_a_wrong_scheme_and_an_unknown_token_are_401(anonymous_api: Any) -> None:
    missing = anonymous_api.get("/api/data/")
    assert_error(missing, 401, "not_authenticated")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    basic = anonymous_api.get("/api/data/", HTTP_AUTHORIZATION="Basic YWRtaW46YWRtaW4=")
    assert "Bearer" in assert_error(basic, 401, "not_authenticated")["detail"]
    unknown = anonymous_api.get("/api/data/", HTTP_AUTHORIZATION="Bearer tcf_" + "x" * 43)
    assert_error(unknown, 401, "invalid_token")
    assert unknown.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_a_revoked_token_is_refused_within_5_seconds(
    live_web: LiveWeb, transactional_db: Any, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["reader"])
    assert rows(live_web.url, headers).status_code == 200  # now cached by the server
    revoked_at = time.monotonic()
    revoke_token(ApiToken.objects.get(digest=digest_of(tokens["reader"])).name)
    wait_until(
        lambda: rows(live_web.url, headers).status_code == 401,
        timeout=REVOCATION_LIMIT_SECONDS,
        what="revoked token refused",
    )
    assert time.monotonic() - revoked_at < REVOCATION_LIMIT_SECONDS
    assert_error(rows(live_web.url, headers), 401, "invalid_token")


def test_a_token_stops_working_when_it_expires(live_web: LiveWeb, transactional_db: Any) -> None:
    expires_at = timezone.now() + timedelta(seconds=2)
    _, secret = issue_token(name="short-lived", role=Role.READER, expires_at=expires_at)
    assert rows(live_web.url, bearer(secret)).status_code == 200
    wait_until(lambda: timezone.now() > expires_at, timeout=5, what="expiry")
    assert_error(rows(live_web.url, bearer(secret)), 401, "invalid_token")


def test_no_secret_is_stored_echoed_or_logged(
    live_web: LiveWeb, transactional_db: Any, tokens: dict[str, str]
) -> None:
    unknown = "tcf_" + "u" * 43
    answers = [
        rows(live_web.url, bearer(tokens["reader"])),
        rows(live_web.url, bearer(unknown)),
        rows(live_web.url, {"Authorization": f"Basic {unknown}"}),
        httpx.post(
            f"{live_web.url}/api/data/",
            headers=bearer(tokens["reader"]),
            json={"text": "x", "label": "y"},
            timeout=10,
        ),  # 403
        httpx.post(
            f"{live_web.url}/api/data/",
            headers=bearer(tokens["editor"]),
            json={"text": tokens["editor"]},
            timeout=10,
        ),  # 400 naming a field
        httpx.get(f"{live_web.url}/api/nothing-here/", headers=bearer(tokens["admin"]), timeout=10),
    ]
    assert [a.status_code for a in answers] == [200, 401, 401, 403, 400, 404]
    secrets = [unknown, *tokens.values()]
    stored = list(ApiToken.objects.values_list("name", "digest", "prefix"))
    for secret in secrets:
        assert all(secret not in answer.text for answer in answers)
        assert not any(secret in field for row in stored for field in row)
        assert secret not in live_web.log.read_text(errors="replace")


def test_a_cached_answer_costs_no_query_until_it_is_older_than_the_ttl(
    db: Any, tokens: dict[str, str], django_assert_num_queries: Any
) -> None:
    now = [0.0]
    cache = TokenCache(ttl=2, clock=lambda: now[0])
    with django_assert_num_queries(1):
        identity = cache.lookup(tokens["editor"])
        assert cache.lookup(tokens["editor"]) == identity
    assert identity is not None and identity.role is Role.EDITOR
    now[0] = 2.5
    with django_assert_num_queries(1):
        cache.lookup(tokens["editor"])


def test_createtoken_prints_the_secret_once_and_stores_its_digest(db: Any) -> None:
    out, err = StringIO(), StringIO()
    call_command(
        "createtoken",
        "--name",
        "ci",
        "--role",
        "reader",
        "--expires-in-days",
        "30",
        stdout=out,
        stderr=err,
    )
    secret = out.getvalue().strip()
    token = ApiToken.objects.get(name="ci")
    assert (token.role, token.digest, token.status) == ("reader", digest_of(secret), "active")
    assert token.expires_at is not None and token.expires_at > timezone.now() + timedelta(days=29)
    assert secret not in err.getvalue()
    listed = StringIO()
    call_command("listtokens", stdout=listed)
    assert "ci" in listed.getvalue() and secret not in listed.getvalue()
    with pytest.raises(CommandError, match="exists"):
        call_command("createtoken", "--name", "ci", "--role", "admin", stdout=StringIO())
    call_command("revoketoken", "ci", stderr=StringIO())
    assert ApiToken.objects.get(name="ci").status == "revoked"


ADMIN_FROM_ENV = ("createtoken", "--name", "admin", "--role", "admin", "--from-env", "ADMIN_TOKEN")


def test_createtoken_from_env_creates_then_rotates_without_printing(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = StringIO()
    monkeypatch.setenv("ADMIN_TOKEN", "first-secret-of-at-least-32-characters")
    call_command(*ADMIN_FROM_ENV, stdout=out, stderr=StringIO())
    first = ApiToken.objects.get(name="admin")
    monkeypatch.setenv("ADMIN_TOKEN", "second-secret-of-at-least-32-characters")
    call_command(*ADMIN_FROM_ENV, stdout=out, stderr=StringIO())
    rotated = ApiToken.objects.get(name="admin")
    assert rotated.id == first.id
    assert rotated.digest == digest_of("second-secret-of-at-least-32-characters")
    assert out.getvalue() == ""
    monkeypatch.setenv("ADMIN_TOKEN", "short")
    with pytest.raises(CommandError, match="at least 32"):
        call_command(*ADMIN_FROM_ENV)
