"""Rate limits on web's API: the middleware, and which scope a request counts against.

Scopes, each with its own limit per minute in settings (0 turns it off):
predict (`POST /api/predict/`), train (`POST /api/train/`), writes (every other unsafe method
under /api/, bulk import included) and reads (safe methods under /api/). The schema, the docs,
health and static files are never limited. A request is counted against its caller: the token
id AUTH's middleware sets (`request.token_id`), else a hash of the bearer token it presents,
else the client address. A refusal is 429 `rate_limited` with `Retry-After`.

Callers without a token are limited too, before anything else runs (`limit_callers`, outside
the token check): requests without an Authorization header count against `anonymous` per client
address on every route but /health/live, and each 401 answered to a request whose token was
refused (unknown, expired, revoked) counts against `rejected` per address; an address over that
limit is answered 429 for every request that presents a token, without checking it, until its
Retry-After. The admin's login (web/edge/admin_sessions.py) counts failed logins per address and
per username in scopes of its own.

Redis outage: predict, reads and writes fail open (a prediction or a stored row matters more
than the limit for a few seconds; writes go to PostgreSQL, which does not need Redis); train
fails closed with 503 `rate_limit_unavailable`, since a training needs Redis (its queue and job
state) anyway and a runaway script must not queue trainings unchecked. The caller and login
scopes fail open (an outage must not lock the admins out).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from web.auth.middleware import route_name
from web.config import WebSettings
from web.edge.rate_limiter import Scope, SharedRateLimiter
from web.errors import RateLimitUnavailable, ServiceError, TooManyRequests, error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# (URL name in web/urls.py, method) -> scope, where it is neither reads nor writes.
ROUTE_SCOPES = {("predict", "POST"): "predict", ("train", "POST"): "train"}
UNLIMITED_ROUTES = frozenset({"schema", "docs"})
# Probes of the process itself, never refused (an orchestrator would restart a healthy process).
UNLIMITED_ANONYMOUS_PATHS = frozenset({"/health/live"})
LOGIN_BY_ADDRESS, LOGIN_BY_USERNAME = "login-address", "login-username"


class TooManyAttempts(ServiceError):
    """429 for a caller counted per address or username (anonymous, refused tokens, logins)."""

    status, code = 429, "rate_limited"

    def __init__(self, what: str, *, retry_after: int) -> None:
        super().__init__(
            f"Too many {what}. Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


def scopes(config: WebSettings) -> list[Scope]:
    """The scopes, their limits and their Redis-outage policy (see the module docstring)."""
    return [
        Scope("predict", config.rate_limit_predict_per_minute, fail_open=True),
        Scope("reads", config.rate_limit_reads_per_minute, fail_open=True),
        Scope("writes", config.rate_limit_writes_per_minute, fail_open=True),
        Scope("train", config.rate_limit_train_per_minute, fail_open=False),
        Scope("anonymous", config.rate_limit_anonymous_per_minute, fail_open=True),
        Scope("rejected", config.rate_limit_rejected_per_minute, fail_open=True),
        Scope(
            LOGIN_BY_ADDRESS,
            config.admin_login_failures_per_address,
            fail_open=True,
            window_minutes=config.admin_login_window_minutes,
        ),
        Scope(
            LOGIN_BY_USERNAME,
            config.admin_login_failures_per_username,
            fail_open=True,
            window_minutes=config.admin_login_window_minutes,
        ),
    ]


def limiter_from_settings(config: WebSettings) -> SharedRateLimiter | None:
    """The process's limiter, or None when every scope is off."""
    configured = scopes(config)
    if all(scope.per_minute <= 0 for scope in configured):
        return None
    return SharedRateLimiter(config.redis_url, configured)


def scope_of(request: HttpRequest) -> str | None:
    """The scope `request` counts against, or None for routes that are never limited."""
    if not request.path_info.startswith("/api/"):
        return None
    url_name = route_name(request.path_info)  # the token check's cache: resolved once per path
    if url_name is None or url_name in UNLIMITED_ROUTES:
        return None  # an unknown path is answered 404 without any work
    method = str(request.method)
    return ROUTE_SCOPES.get((url_name, method)) or ("reads" if method in SAFE_METHODS else "writes")


def client_key(request: HttpRequest) -> str:
    """Who a request counts against; never the token itself."""
    token_id = getattr(request, "token_id", None)
    if token_id:
        return f"token:{token_id}"
    # META, not request.headers: that one parses every header on first use (tens of us).
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if authorization:
        key = _bearer_key(authorization)
        if key is not None:
            return key
    return address_key(request)


def address_key(request: HttpRequest) -> str:
    """The client address a request counts against when nothing else names its caller."""
    return "address:" + str(request.META.get("REMOTE_ADDR") or "unknown")


@functools.lru_cache(maxsize=4096)
def _bearer_key(authorization: str) -> str | None:
    """A key for the bearer token of an Authorization header (its hash, never the token)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return "bearer:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]


_limiter: SharedRateLimiter | None = None


def install(limiter: SharedRateLimiter | None) -> None:
    """Make `limiter` the process's limiter (web/asgi.py at start-up; tests their own)."""
    global _limiter
    _limiter = limiter


def get_limiter() -> SharedRateLimiter | None:
    return _limiter


@sync_and_async_middleware
def rate_limit(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse requests over their scope's limit with 429 (async only: no thread hop)."""
    if not iscoroutinefunction(get_response):
        # Only Django's test client builds a sync chain: the service runs under ASGI.
        return get_response

    async def middleware(request: HttpRequest) -> HttpResponse:
        scope = scope_of(request) if _limiter is not None else None
        refused = await refusal(request, scope) if scope is not None else None
        if refused is not None:
            return error_response(refused)
        response: HttpResponse = await get_response(request)
        return response

    return middleware


@sync_and_async_middleware
def limit_callers(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse anonymous requests, and requests from addresses whose tokens keep being refused,
    beyond their limits per address (see the module docstring)."""
    if not iscoroutinefunction(get_response):
        return get_response

    async def middleware(request: HttpRequest) -> HttpResponse:
        limiter = _limiter
        if limiter is None:
            response: HttpResponse = await get_response(request)
            return response
        address = address_key(request)
        if "HTTP_AUTHORIZATION" not in request.META:
            if request.path_info not in UNLIMITED_ANONYMOUS_PATHS:
                decision = await limiter.acquire("anonymous", address)
                if not decision.allowed:
                    return error_response(
                        TooManyAttempts(
                            "requests without a token from this address",
                            retry_after=decision.retry_after,
                        )
                    )
            return await get_response(request)
        # Only what this process remembers: a Redis round trip per API call would cost predict.
        decision = await limiter.over_limit("rejected", address, ask_redis=False)
        if not decision.allowed:
            return error_response(
                TooManyAttempts(
                    "refused tokens from this address", retry_after=decision.retry_after
                )
            )
        response = await get_response(request)
        if response.status_code == 401:
            await limiter.count("rejected", address)
        return response

    return middleware


async def refusal(request: HttpRequest, scope: str) -> ServiceError | None:
    """Count `request` against `scope`: None when it may go on, else the error to answer.

    The middleware calls it for /api/; the /v2 views (web/proxy/inference_protocol.py) too.
    """
    limiter = _limiter
    if limiter is None:
        return None
    decision = await limiter.acquire(scope, client_key(request))
    if decision.limiter_down:
        return RateLimitUnavailable(retry_after=decision.retry_after)
    if not decision.allowed:
        limit = limiter.scopes[scope].per_minute
        return TooManyRequests(scope, limit=limit, retry_after=decision.retry_after)
    return None


TOO_MANY = {
    "description": "rate_limited: over this scope's limit per token (or address; without a "
    "token, or with refused ones, per address); Retry-After says when to try again",
    "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def declare_rate_limits(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the 429 of every limited operation in the schema
    (all but /health/live: callers without a token are limited per address everywhere)."""
    for path, operations in result.get("paths", {}).items():
        if path in UNLIMITED_ANONYMOUS_PATHS:
            continue
        for operation in operations.values():
            operation.setdefault("responses", {}).setdefault("429", TOO_MANY)
    train = result.get("paths", {}).get("/api/train/", {}).get("post")
    if train is not None:  # fails closed: 503 when the limit cannot be checked
        unavailable = train["responses"].get("503")
        if unavailable is not None and "rate_limit_unavailable" not in unavailable["description"]:
            unavailable = {
                **unavailable,
                "description": unavailable["description"]
                + "; or rate_limit_unavailable: the rate limits cannot be checked",
            }
            train["responses"]["503"] = unavailable
    return result
