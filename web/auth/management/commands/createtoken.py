"""`python -m web createtoken --name NAME --role ROLE`: make a token and print its secret once."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from web.auth.models import ApiToken
from web.auth.roles import Role
from web.auth.tokens import TokenError, digest_of, ensure_token, issue_token


def refuse_retired_secret(name: str, secret: str, *, variable: str) -> None:
    """Refuse to bring back a secret that was revoked or has expired.

    Why: start-up (`make run`, compose's `migrate`) sets the admin token from a kept secret on
    every start. An operator who revoked a leaked token must not see the next start revive it;
    only a new secret makes the token usable again (rotation).
    """
    retired = (
        ApiToken.objects.filter(digest=digest_of(secret))
        .exclude(revoked_at=None, expires_at=None)
        .first()
    )
    if retired is None or retired.status == "active":
        return
    raise CommandError(
        f"the secret in ${variable} belongs to token {retired.name!r}, which is {retired.status}; "
        f"it stays {retired.status}. Rotate the secret: give ${variable} a new value (make run: "
        "delete the admin-token file under VAR_DIR and start again; compose: a new ADMIN_TOKEN "
        "in .env), then this command makes it the token's secret"
    )


class Command(BaseCommand):
    help = (
        "Create an API token and print its secret (only now: just its digest is stored). "
        "With --from-env VAR, make VAR's value the token's secret instead (create or rotate; "
        "nothing is printed); a secret that was revoked or expired is refused, never revived."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="unique, e.g. ci or alice@laptop")
        parser.add_argument("--role", required=True, choices=[role.label for role in Role])
        parser.add_argument("--expires-in-days", type=float, help="default: never expires")
        parser.add_argument(
            "--models",
            metavar="A,B",
            help="comma-separated model names the token may use (default: every name)",
        )
        parser.add_argument(
            "--from-env",
            metavar="VAR",
            help="take the secret from this environment variable (never from the command line)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = Role.from_label(options["role"])
        days = options["expires_in_days"]
        models = options["models"].split(",") if options["models"] is not None else None
        try:
            if options["from_env"]:
                if days is not None:
                    raise CommandError("--from-env tokens do not expire; drop --expires-in-days")
                if models is not None:
                    raise CommandError("--from-env tokens may use every model; drop --models")
                secret = os.environ.get(options["from_env"], "")
                if not secret:
                    raise CommandError(f"${options['from_env']} is empty or not set")
                refuse_retired_secret(options["name"], secret, variable=options["from_env"])
                token = ensure_token(name=options["name"], role=role, secret=secret)
                self.stderr.write(
                    f"token {token.name} ({token.role}) set from ${options['from_env']}"
                )
                return
            expires_at = timezone.now() + timedelta(days=days) if days is not None else None
            token, secret = issue_token(
                name=options["name"], role=role, expires_at=expires_at, models=models
            )
        except TokenError as error:
            raise CommandError(str(error)) from None
        expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
        scope = f", models {token.models_shown}" if token.models is not None else ""
        self.stderr.write(f"token {token.name} ({token.role}{expiry}{scope}); shown only now:")
        self.stdout.write(secret)
