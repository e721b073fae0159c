"""The role matrix, generated from ROUTE_ROLES: every /api/ route x method x role, and no token.

Requests go through the real ASGI app (the async middleware the servers run), with the
algorithm service played by an httpx.MockTransport at the network edge.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.helpers import assert_error, bearer
from tests.web.conftest import InProcessWeb
from web.asgi import application
from web.auth.roles import PUBLIC_ROUTES, ROUTE_ROLES, Role

CALLERS = ["anonymous", *(role.label for role in Role)]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def algorithm_service(request: httpx.Request) -> httpx.Response:
    """A trained algorithm service with one queued job."""
    if request.url.path == "/predict":
        return httpx.Response(200, json={"labels": ["libs"], "model_version": "v1"})
    if request.url.path == "/train":
        return httpx.Response(202, json={"job_id": "j1", "status": "queued"})
    return httpx.Response(404, json={"error": "not_found", "detail": "No such job."})


def call(method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return InProcessWeb(headers).ask(algorithm_service, method, path, json={})


def api_routes(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(URL name, a concrete path) for every route of the URL conf under /api/."""
    for entry in patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$").replace("/?", "/")
        if isinstance(entry, URLResolver):
            yield from api_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/"):
            # A value each path parameter accepts: the check happens before the lookup.
            yield str(entry.name), "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)|<[^>]+>", path_value, route)


def path_value(parameter: re.Match[str]) -> str:
    """Only named aliases resolve; challenger is the one an editor may move (the alias view
    itself refuses champion and previous to non-admins, see tests/registry)."""
    return "challenger" if parameter[1] == "alias" else "1"


ROUTE_PATHS = dict(api_routes(get_resolver().url_patterns))
MATRIX = [
    pytest.param(route, method, needed, caller, id=f"{method} {route} as {caller}")
    for route, methods in ROUTE_ROLES.items()
    for method, needed in methods.items()
    for caller in CALLERS
]


@pytest.fixture(scope="module")
def headers_of(module_tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    """One set of tokens: no answer of the matrix depends on what ran before (made-up ids)."""
    return {"anonymous": {}, **{role: bearer(secret) for role, secret in module_tokens.items()}}


def test_every_api_route_has_roles() -> None:
    """Fail closed: a new /api/ route must be added to ROUTE_ROLES (or be public) to be usable."""
    assert set(ROUTE_PATHS) - PUBLIC_ROUTES == set(ROUTE_ROLES)


@pytest.mark.parametrize(("route", "method", "needed", "caller"), MATRIX)
def test_each_role_gets_what_the_table_says(
    headers_of: dict[str, dict[str, str]], route: str, method: str, needed: Role, caller: str
) -> None:
    response = call(method, ROUTE_PATHS[route], headers_of[caller])
    if caller == "anonymous":
        body = assert_error(response, 401, "not_authenticated")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    elif Role.from_label(caller) < needed:
        body = assert_error(response, 403, "forbidden")
        assert f"needs role {needed.label}; this token has {caller}" in body["detail"]
    else:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text


@pytest.mark.parametrize("route", sorted(ROUTE_ROLES))
def test_methods_a_route_does_not_list_are_405_for_a_token_and_401_without(
    headers_of: dict[str, dict[str, str]], route: str
) -> None:
    """Views serve only the methods the table lists, so no method escapes the check."""
    for method in set(METHODS) - set(ROUTE_ROLES[route]):
        assert_error(call(method, ROUTE_PATHS[route], headers_of["admin"]), 405)
        assert_error(call(method, ROUTE_PATHS[route], {}), 401)


def test_a_route_missing_from_the_table_is_refused_even_to_admin(
    headers_of: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(ROUTE_ROLES, "predict")
    response = call("POST", "/api/predict/", headers_of["admin"])
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/health/live"])
def test_schema_docs_and_health_need_no_token(module_tokens: dict[str, str], path: str) -> None:
    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=cast(Any, application))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
            return await web.get(path)

    assert asyncio.run(scenario()).status_code == 200
