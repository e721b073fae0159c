"""Which model names a request's token may use: every name, or the ones it was limited to.

The names come with the identity the authentication middleware already established and caches
(web/auth/check.py), so a check costs a set lookup, never a query. Roles are checked apart
(web/auth/roles.py): a limit narrows what a token may touch, it never widens its role.
"""

from __future__ import annotations

from typing import Any

from web.errors import Forbidden


def allowed_models(request: Any) -> frozenset[str] | None:
    """The names the request's token may use; None for every name (or no token on the request)."""
    identity = getattr(request, "token_identity", None)
    return identity.models if identity is not None else None


def may_use(request: Any, model: str) -> bool:
    """Whether the request's token may use `model`."""
    allowed = allowed_models(request)
    return allowed is None or model in allowed


def require_model(request: Any, model: str) -> None:
    """Refuse (403 `forbidden`) a request whose token may not use `model`."""
    if may_use(request, model):
        return
    identity = request.token_identity
    names = ", ".join(sorted(identity.models)) or "none"
    raise Forbidden(
        f"The token {identity.name!r} may not use the model {model!r}; it may use: {names}."
    )
