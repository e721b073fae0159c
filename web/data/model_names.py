"""Rows belong to a model name: which name a request means, and a name made by its first rows.

A name exists once it is in `registered_model` (`default` always). An editor's first write of
rows under a new name registers it in the write's own transaction (audited `model.create`) and,
after the commit, announces it to the serving processes. Names are never deleted, so each
process remembers the names it has seen exist (`_known`): a write or a list under a known name
costs no extra statement. A name joins that set only once its registration is committed.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import connection, transaction
from drf_spectacular.utils import OpenApiParameter

from core import registry
from core.model_names import (
    DEFAULT_MODEL,
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    InvalidModelName,
    check_model_name,
    is_model_name,
)
from web.auth.scope import require_model
from web.errors import NotFound, ValidationFailed
from web.registry.database import DjangoDatabase
from web.registry.serving import announce_desired

MODEL_PARAMETER = "model"
_SLUG = re.compile(MODEL_NAME_PATTERN)
MODEL_QUERY_PARAMETER = OpenApiParameter(
    MODEL_PARAMETER,
    {
        "type": "string",
        "pattern": f"^{MODEL_NAME_PATTERN}$",
        "maxLength": MODEL_NAME_MAX_LENGTH,
        "default": DEFAULT_MODEL,
    },
    description=f"The model name whose rows are meant (default `{DEFAULT_MODEL}`).",
)
_known: set[str] = {DEFAULT_MODEL}


def requested_model(request: Any, *, must_exist: bool = True) -> str:
    """The name `?model=` gives (`default` without one): 400 unless a slug, 403 when the token
    may not use it, 404 (with `must_exist`) when no such name exists.

    A reserved name (`versions`, `aliases`) is a slug no model can have: unknown, so 404 on a
    read; a write under it is refused by `checked_model` (400).
    """
    model = request.query_params.get(MODEL_PARAMETER, DEFAULT_MODEL)
    if not _SLUG.fullmatch(model):
        raise ValidationFailed(
            f"Invalid ?{MODEL_PARAMETER}=.", fields={MODEL_PARAMETER: [_invalid_name(model)]}
        )
    require_model(request, model)
    if must_exist and not model_exists(model):
        raise NotFound(f"No model named {model!r}: a name exists once rows are written under it.")
    return model


def checked_model(model: str) -> str:
    """`model` for a write: 400 `validation_error` (field `model`) when it cannot be a name."""
    try:
        return check_model_name(model)
    except InvalidModelName as error:
        raise ValidationFailed(
            f"Invalid {MODEL_PARAMETER}.", fields={MODEL_PARAMETER: [str(error)]}
        ) from None


def _invalid_name(model: str) -> str:
    try:
        check_model_name(model)
    except InvalidModelName as error:
        return str(error)
    return "Not a model name."


def model_exists(model: str) -> bool:
    """Whether `model` is a registered name (one query the first time a process meets it)."""
    if model in _known:
        return True
    if is_model_name(model) and registry.model_exists(DjangoDatabase(), model):
        if not connection.in_atomic_block:  # committed: a transaction's own may be rolled back
            _known.add(model)
        return True
    return False


def register_on_first_write(models: set[str], *, request: Any) -> None:
    """Register the names among `models` that do not exist yet, inside the caller's transaction
    (audited as the request's token), and announce each new one after the commit. Known names
    cost nothing."""
    unknown = models - _known
    if not unknown:
        return
    actor = registry.Actor(
        name=getattr(request, "actor", None) or "anonymous",
        request_id=getattr(request, "request_id", None),
    )
    for model in sorted(unknown):
        if registry.register_model(DjangoDatabase(), model, actor=actor):
            transaction.on_commit(_announcer(model), robust=True)
        transaction.on_commit(_remember(model))


def forget_known_names(**_: Any) -> None:
    """Forget the names seen (connected to post_migrate, which a `flush` of the tables sends)."""
    _known.clear()
    _known.add(DEFAULT_MODEL)


def _announcer(model: str) -> Any:
    return lambda: announce_desired(model)


def _remember(model: str) -> Any:
    return lambda: _known.add(model)
