"""`python -m web createtoken --name NAME --role ROLE`: make a token and print its secret once."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from web.auth.roles import Role
from web.auth.tokens import TokenError, ensure_token, issue_token


class Command(BaseCommand):
    help = (
        "Create an API token and print its secret (only now: just its digest is stored). "
        "With --from-env VAR, make VAR's value the token's secret instead (create or rotate; "
        "nothing is printed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="unique, e.g. ci or alice@laptop")
        parser.add_argument("--role", required=True, choices=[role.label for role in Role])
        parser.add_argument("--expires-in-days", type=float, help="default: never expires")
        parser.add_argument(
            "--from-env",
            metavar="VAR",
            help="take the secret from this environment variable (never from the command line)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = Role.from_label(options["role"])
        days = options["expires_in_days"]
        try:
            if options["from_env"]:
                if days is not None:
                    raise CommandError("--from-env tokens do not expire; drop --expires-in-days")
                secret = os.environ.get(options["from_env"], "")
                if not secret:
                    raise CommandError(f"${options['from_env']} is empty or not set")
                token = ensure_token(name=options["name"], role=role, secret=secret)
                self.stderr.write(
                    f"token {token.name} ({token.role}) set from ${options['from_env']}"
                )
                return
            expires_at = timezone.now() + timedelta(days=days) if days is not None else None
            token, secret = issue_token(name=options["name"], role=role, expires_at=expires_at)
        except TokenError as error:
            raise CommandError(str(error)) from None
        expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
        self.stderr.write(f"token {token.name} ({token.role}{expiry}); shown only now:")
        self.stdout.write(secret)
