"""The service credential: every endpoint but health and the docs answers only token holders.

Callers send `Authorization: Bearer <token>` with one of `ALGORITHM_TOKENS`. The presented token
is compared with every accepted one in constant time (no early exit on the first match), so the
answer's timing tells nothing about how close a guess was. Nothing here logs or echoes a token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from algorithm.service.errors import Unauthorized
from algorithm.service.event_loop import BODY_ADMITTED_FOR, request_context

# Flask endpoints anyone may call: probes, the schema and Swagger UI; /metrics has its own
# optional METRICS_TOKEN (algorithm/service/observability.py).
OPEN_ENDPOINTS = frozenset(
    {
        "api.live",
        "api.ready",
        "api.started",
        "docs.openapi_json",
        "docs.swagger_ui",
        "docs.swagger_static",
        "metrics.metrics",
    }
)


def bearer_token(authorization: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # WSGI headers are latin-1 strings: any byte the client sent round-trips.
    return token.strip().encode("latin-1")


def is_accepted(presented: bytes, accepted: Iterable[bytes]) -> bool:
    """Whether `presented` equals one of `accepted`, comparing with each of them in full."""
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(presented, token)
    return matched


def require_service_token(app: Flask, tokens: Iterable[str]) -> None:
    """Refuse, with 401, every request to a protected endpoint without an accepted token."""
    accepted = tuple(token.encode() for token in tokens)

    @app.before_request
    def check_service_token() -> None:
        current = request_context().request  # one look through Flask's context
        endpoint = current.endpoint
        # An unknown path or method is answered 404/405 to anyone: the routes are no secret
        # (the schema is public), and a probe's 405 must say `Allow` whoever asks.
        if current.routing_exception is not None or endpoint in OPEN_ENDPOINTS:
            return
        # `token_before_body` admitted this body for this (protected) endpoint: it found an
        # accepted token, with the same functions; checking again would change nothing.
        if current.environ.get(BODY_ADMITTED_FOR) == endpoint:
            return
        presented = bearer_token(current.headers.get("Authorization"))
        if presented is None:
            raise Unauthorized()
        if not is_accepted(presented, accepted):
            raise Unauthorized(
                "The service token is not accepted: send one of ALGORITHM_TOKENS as "
                "`Authorization: Bearer <token>`.",
                invalid=True,
            )


def token_before_body(tokens: Iterable[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Whether a request's body may be read: `FlaskASGI` asks before it takes a byte of it.

    Yes for an open endpoint or no route at all (Flask answers those without a token), and for
    a request that carries an accepted token; no otherwise, and Flask's check above then
    answers 401 without the body ever being read. Same decision, same functions, one answer:
    for a protected endpoint it admitted, Flask's check does not run again (`BODY_ADMITTED_FOR`).
    """
    accepted = tuple(token.encode() for token in tokens)

    def admits(endpoint: str | None, scope: dict[str, Any]) -> bool:
        if endpoint is None or endpoint in OPEN_ENDPOINTS:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = bearer_token(value.decode("latin-1"))
                return presented is not None and is_accepted(presented, accepted)
        return False

    return admits
