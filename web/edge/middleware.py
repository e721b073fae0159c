"""Security headers without a thread hop.

Django's SecurityMiddleware is a sync MiddlewareMixin: under ASGI each request pays a
`sync_to_async` hop through a thread per such middleware. This async-native middleware sets the
headers an API needs, and Strict-Transport-Security on requests that came over HTTPS when
SECURE_HSTS_SECONDS is set (TLS ends at the proxy in front of us: SECURE_PROXY_SSL_HEADER says
which requests did). No redirects: an API client does not follow them with its body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def strict_transport_security() -> str | None:
    """The HSTS header's value from the settings, or None when HSTS is off."""
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    return value + "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else value


@sync_and_async_middleware
def security_headers(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Add SECURITY_HEADERS (and HSTS over HTTPS) to every response, sync or async."""
    hsts = strict_transport_security()

    def add_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if hsts is not None and request.is_secure():
            response.headers.setdefault("Strict-Transport-Security", hsts)
        return response

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            return add_headers(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return add_headers(request, get_response(request))

    return middleware
