"""Model names: several classifiers in one deployment, each by its name.

A name is a slug (lowercase letters, digits and `-`, starting with a letter or digit, at most
64 characters). Everything that names no model means `DEFAULT_MODEL`, so every call and row from
before names existed keeps working. `versions` and `aliases` are path segments of web's
`/api/models/versions/` and `/api/models/aliases/` (today's routes for `default`), so they can
never be names. Declared once, here: web, the worker and the algorithm service validate alike.
"""

from __future__ import annotations

import re

DEFAULT_MODEL = "default"
MODEL_NAME_MAX_LENGTH = 64
MODEL_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,63}"
RESERVED_MODEL_NAMES = frozenset({"versions", "aliases"})
_NAME = re.compile(MODEL_NAME_PATTERN)


class InvalidModelName(ValueError):
    """The name is not a slug of at most 64 characters, or is reserved."""


def is_model_name(name: object) -> bool:
    """Whether `name` is a name a model can have."""
    return (
        isinstance(name, str)
        and _NAME.fullmatch(name) is not None
        and name not in RESERVED_MODEL_NAMES
    )


def check_model_name(name: object) -> str:
    """`name` itself when it can name a model; InvalidModelName saying why otherwise."""
    if is_model_name(name):
        assert isinstance(name, str)
        return name
    if isinstance(name, str) and name in RESERVED_MODEL_NAMES:
        raise InvalidModelName(f"{name!r} is reserved (a path of /api/models/); choose another.")
    raise InvalidModelName(
        "A model name is lowercase letters, digits and '-', starting with a letter or digit, "
        f"at most {MODEL_NAME_MAX_LENGTH} characters."
    )
