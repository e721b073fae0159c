"""`python -m web revoketoken NAME`: the token stops working within AUTH_CACHE_SECONDS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from web.auth.tokens import TokenError, revoke_token


class Command(BaseCommand):
    help = "Revoke an API token by name (kept, marked revoked; every process refuses it in <= 5 s)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            token = revoke_token(options["name"])
        except TokenError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(f"token {token.name} revoked")
