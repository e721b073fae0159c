"""Who may do what: the roles, and the minimal role of every /api/ route and method.

One table, ROUTE_ROLES, keyed by the URL name in web/urls.py, drives the middleware's check,
the schema's 403 answers and the role-matrix tests. A route under /api/ that is missing from it
is refused to every token (fail closed); tests/web/test_auth_roles.py checks none is missing.
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """A token's role; a higher role may do everything a lower one may."""

    READER = 1
    EDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            choices = ", ".join(role.label for role in cls)
            raise ValueError(f"unknown role {label!r}; choose one of {choices}") from None


READER, EDITOR, ADMIN = Role.READER, Role.EDITOR, Role.ADMIN

# Routes under /api/ that answer without a token: the schema and its Swagger page.
PUBLIC_ROUTES = frozenset({"schema", "docs"})

ROUTE_ROLES: dict[str, dict[str, Role]] = {
    "data-list": {"GET": READER, "POST": EDITOR},
    "data-detail": {"GET": READER, "PUT": EDITOR, "PATCH": EDITOR, "DELETE": EDITOR},
    "data-import": {"POST": EDITOR},
    "data-export": {"GET": READER},
    "predict": {"POST": READER},
    "train": {"GET": READER, "POST": EDITOR},
    "job": {"GET": READER},
    # The registry. Moving `challenger` is an editor's; `champion`, `previous` and `force` are
    # checked for admin by the alias view itself (the table cannot see the path's alias).
    "model-versions": {"GET": READER},
    "model-version": {"GET": READER, "DELETE": ADMIN},
    "model-version-restore": {"POST": ADMIN},
    "model-aliases": {"GET": READER},
    "model-alias": {"PUT": EDITOR},
    "model-alias-rollback": {"POST": ADMIN},
    "model-alias-history": {"GET": READER},
    "models": {"GET": READER},  # the model names (a token limited to some sees only those)
    "audit": {"GET": ADMIN},
}


def required_role(route: str, method: str) -> Role | None:
    """The minimal role for `method` on `route`; None when no token may call it.

    HEAD is GET without a body. A method the route does not list, on a listed route, needs any
    valid token and then gets the view's own 405: views serve only the methods listed here
    (tests/web/test_auth_roles.py checks that too).
    """
    methods = ROUTE_ROLES.get(route)
    if methods is None:
        return None
    role = methods.get("GET" if method == "HEAD" else method)
    return role if role is not None else READER
