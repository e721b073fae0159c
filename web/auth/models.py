"""API tokens: only a SHA-256 digest of each secret is stored, never the secret."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from core.model_names import MODEL_NAME_MAX_LENGTH
from web.auth.roles import Role

ROLE_CHOICES = [(role.label, role.label) for role in Role]


class ApiToken(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="Who or what holds it.")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES)
    # sha256 of the secret, hex. The secret is 256 random bits, so a fast unsalted hash is
    # enough (nothing to brute-force) and lets a request find its token by one index lookup.
    digest = models.CharField(max_length=64, unique=True)
    # The first characters of the secret, to recognise a token in a list; not enough to use it.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The model names the token may use (web/auth/scope.py); NULL: every name, as before names.
    models = ArrayField(
        models.CharField(max_length=MODEL_NAME_MAX_LENGTH),
        null=True,
        blank=True,
        help_text="Model names this token may use; empty: every name.",
    )

    class Meta:
        db_table = "api_token"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"

    @property
    def models_shown(self) -> str:
        """The names the token may use, for lists: `*` for every name."""
        return ",".join(self.models) if self.models is not None else "*"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"
