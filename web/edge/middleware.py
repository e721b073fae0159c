"""Security headers without a thread hop.

Django's SecurityMiddleware is a sync MiddlewareMixin: under ASGI each request pays a
`sync_to_async` hop through a thread per such middleware. This async-native middleware sets the
headers an API needs (no redirects, no HSTS: TLS ends at the proxy in front of us).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@sync_and_async_middleware
def security_headers(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Add SECURITY_HEADERS to every response, sync or async."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            response: HttpResponse = await get_response(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = get_response(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return middleware
