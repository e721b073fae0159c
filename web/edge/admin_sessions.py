"""Sessions, logins and messages for /admin/ only, and the throttle on the admin's login.

Django's admin needs SessionMiddleware, AuthenticationMiddleware and MessageMiddleware. All three
are sync MiddlewareMixin classes: in MIDDLEWARE they would cost every request (predictions
included) a thread hop and a session lookup. This async-native middleware builds their chain
once and sends only paths under /admin/ through it; everything else goes straight on.

A login costs a password hash (about a quarter of a second of CPU) and lets passwords be
guessed, so failed logins are counted per client address and per username (the shared limits
in Redis, web/edge/rate_limits.py): past ADMIN_LOGIN_FAILURES_PER_ADDRESS or
ADMIN_LOGIN_FAILURES_PER_USERNAME in ADMIN_LOGIN_WINDOW_MINUTES, a login attempt is answered
429 with Retry-After before any password is checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from web.edge import rate_limits
from web.errors import error_response

ADMIN_PREFIX = "/admin/"
LOGIN_PATH = "/admin/login/"


@sync_and_async_middleware
def admin_sessions(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Run the session, authentication and message middlewares for /admin/ paths only."""
    admin_chain = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(get_response)))
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            if request.path.startswith(ADMIN_PREFIX):
                if request.method == "POST" and request.path == LOGIN_PATH:
                    return await _throttled_login(admin_chain, request)
                response: HttpResponse = await admin_chain(request)
                return response
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return admin_chain(request)
        return get_response(request)

    return middleware


async def _throttled_login(admin_chain: Any, request: HttpRequest) -> HttpResponse:
    """A login attempt, unless its address or username failed too often; count a failure."""
    limiter = rate_limits.get_limiter()
    if limiter is None:
        response: HttpResponse = await admin_chain(request)
        return response
    callers = [(rate_limits.LOGIN_BY_ADDRESS, rate_limits.address_key(request))]
    username = str(request.POST.get("username", "")).strip()
    if username:
        callers.append((rate_limits.LOGIN_BY_USERNAME, _username_key(username)))
    for scope, caller in callers:
        decision = await limiter.over_limit(scope, caller, ask_redis=True)
        if not decision.allowed:
            who = "username" if scope == rate_limits.LOGIN_BY_USERNAME else "address"
            return error_response(
                rate_limits.TooManyAttempts(
                    f"failed admin logins for this {who}", retry_after=decision.retry_after
                )
            )
    response = await admin_chain(request)
    # The login view redirects after a success and shows the form again after a failure.
    if response.status_code == 200:
        for scope, caller in callers:
            await limiter.count(scope, caller)
    return response


def _username_key(username: str) -> str:
    """The username's key: case folded (guesses cannot dodge it by case), hashed (no raw input
    in Redis keys)."""
    return "username:" + hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
