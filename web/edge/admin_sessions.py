"""Sessions, logins and messages for /admin/ only.

Django's admin needs SessionMiddleware, AuthenticationMiddleware and MessageMiddleware. All three
are sync MiddlewareMixin classes: in MIDDLEWARE they would cost every request (predictions
included) a thread hop and a session lookup. This async-native middleware builds their chain
once and sends only paths under /admin/ through it; everything else goes straight on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

ADMIN_PREFIX = "/admin/"


@sync_and_async_middleware
def admin_sessions(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Run the session, authentication and message middlewares for /admin/ paths only."""
    admin_chain = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(get_response)))
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            if request.path.startswith(ADMIN_PREFIX):
                response: HttpResponse = await admin_chain(request)
                return response
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return admin_chain(request)
        return get_response(request)

    return middleware
