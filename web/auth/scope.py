"""STUB for the web-registry branch only: the web-data part owns web/auth/scope.py and its
version replaces this one on merge (same two functions, same signatures).

A token may be limited to some model names (None: every name).
"""

from __future__ import annotations

from typing import Any

from web.errors import Forbidden


def allowed_models(request: Any) -> frozenset[str] | None:
    """The names the caller's token may use; None when it may use every name."""
    names = getattr(getattr(request, "token_identity", None), "models", None)
    return frozenset(names) if names is not None else None


def require_model(request: Any, model: str) -> None:
    """Forbidden unless the caller's token may use `model`."""
    allowed = allowed_models(request)
    if allowed is not None and model not in allowed:
        raise Forbidden(f"This token may not use model {model!r}.")
