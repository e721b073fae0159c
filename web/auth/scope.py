"""STUB (web-predict branch only, replaced by the web-data branch's module on merge).

Which model names a token may use: `api_token.models` (None = every name). This stub reads the
names from the identity the middleware set (`request.token_identity.models`, None when the
identity has no such field yet), so predict can call the contract's two functions before the
real module is merged.
"""

from __future__ import annotations

from typing import Any

from web.errors import Forbidden


def allowed_models(request: Any) -> frozenset[str] | None:
    """The names the request's token may use; None: every name."""
    names = getattr(getattr(request, "token_identity", None), "models", None)
    return None if names is None else frozenset(names)


def require_model(request: Any, model: str) -> None:
    """Forbidden unless the request's token may use `model`."""
    allowed = allowed_models(request)
    if allowed is not None and model not in allowed:
        raise Forbidden(f"This token may not use model {model!r}.")
