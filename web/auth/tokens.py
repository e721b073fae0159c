"""Issuing, rotating and revoking tokens: the one place that writes ApiToken rows.

A secret is `tcf_` + 256 random bits (URL-safe base64); only its SHA-256 digest is stored, so
the secret is shown once, when it is made, and never again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.model_names import InvalidModelName, check_model_name
from web.auth.models import ApiToken
from web.auth.roles import Role

SECRET_PREFIX = "tcf_"
MIN_SECRET_CHARS = 32  # for secrets chosen by an operator (ADMIN_TOKEN)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
SHOWN_PREFIX_CHARS = 8


class TokenError(ValueError):
    """A token request that cannot be carried out; the message says why."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    *,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
    secret: str | None = None,
    models: list[str] | None = None,
) -> tuple[ApiToken, str]:
    """Create the token `name`; return it and its secret (the only time the secret is known).

    `models` limits it to those model names (None: every name).
    """
    _check_name(name)
    models = checked_model_names(models) if models is not None else None
    secret = secret if secret is not None else new_secret()
    _check_secret(secret)
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("the expiry is in the past")
    with transaction.atomic():
        if ApiToken.objects.filter(name=name).exists():
            raise TokenError(f"a token named {name!r} exists; pick another name or revoke it")
        token = ApiToken.objects.create(
            name=name,
            role=role.label,
            digest=digest_of(secret),
            prefix=secret[:SHOWN_PREFIX_CHARS],
            expires_at=expires_at,
            models=models,
        )
    return token, secret


def ensure_token(*, name: str, role: Role, secret: str) -> ApiToken:
    """Make `secret` the active, non-expiring secret of token `name` (created if missing).

    For secrets an operator keeps elsewhere (compose's ADMIN_TOKEN, `make run`'s file):
    running it again is a no-op, and a changed secret rotates the token in place.
    """
    _check_name(name)
    _check_secret(secret)
    token, _ = ApiToken.objects.update_or_create(
        name=name,
        defaults={
            "role": role.label,
            "digest": digest_of(secret),
            "prefix": secret[:SHOWN_PREFIX_CHARS],
            "expires_at": None,
            "revoked_at": None,
        },
    )
    return token


def revoke_token(name: str) -> ApiToken:
    """Revoke the token `name`: refused by every process within the check's cache TTL."""
    token = ApiToken.objects.filter(name=name).first()
    if token is None:
        raise TokenError(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def checked_model_names(names: list[str]) -> list[str]:
    """The names a token is limited to, each a valid model name, sorted without repeats."""
    if not names:
        raise TokenError("a token limited to model names needs at least one name")
    for name in names:
        try:
            check_model_name(name)
        except InvalidModelName as error:
            raise TokenError(f"{name!r} is not a model name: {error}") from None
    return sorted(set(names))


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise TokenError(
            "a token name is 1-100 characters: letters, digits and _ . @ - "
            "(starting with a letter or digit)"
        )


def _check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_CHARS or not secret.isprintable() or " " in secret:
        raise TokenError(
            f"a token secret needs at least {MIN_SECRET_CHARS} printable characters and no spaces"
        )
