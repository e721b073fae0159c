"""`python -m web listtokens`: every token, without secrets."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from web.auth.models import ApiToken


class Command(BaseCommand):
    help = (
        "List API tokens: id, name, role, status, the secret's first characters, expiry, and "
        "the model names each may use (* for every name)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(
            f"{'id':>4}  {'name':<24} {'role':<7} {'status':<8} {'prefix':<9} {'expires':<16} "
            "models"
        )
        for token in ApiToken.objects.all():
            expires = f"{token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "never"
            self.stdout.write(
                f"{token.id:>4}  {token.name:<24} {token.role:<7} {token.status:<8} "
                f"{token.prefix + '…':<9} {expires:<16} {token.models_shown}"
            )
