"""DRF's view of the middleware's check: one check per request, not two.

`TokenFromMiddleware` hands DRF the identity `web.auth.middleware.authenticate` already
established (request.user is that TokenIdentity). DRF imports this module while it loads its
settings, so it imports nothing of DRF's views (web/schema/openapi.py declares the scheme).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

if TYPE_CHECKING:
    from web.auth.check import TokenIdentity

BEARER_CHALLENGE = 'Bearer realm="api"'


class TokenFromMiddleware(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[TokenIdentity, TokenIdentity] | None:
        identity = getattr(request._request, "token_identity", None)
        return (identity, identity) if identity is not None else None

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE
