"""The start-up command (`createtoken --from-env`, run by `make run` and compose's `migrate` on
every start) never brings back a secret that was revoked or has expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from web.auth.roles import Role
from web.auth.tokens import ensure_token, new_secret, revoke_token


def start_up(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    """What start-up runs: the kept secret becomes the admin token's."""
    monkeypatch.setenv("ADMIN_TOKEN", secret)
    call_command("createtoken", name="admin", role="admin", from_env="ADMIN_TOKEN")


@pytest.mark.parametrize("retired", ["revoked", "expired"])
def test_a_retired_secret_stays_retired_and_start_up_says_to_rotate(
    db: Any, monkeypatch: pytest.MonkeyPatch, retired: str
) -> None:
    from web.auth.models import ApiToken

    kept = new_secret()
    start_up(monkeypatch, kept)
    if retired == "revoked":
        revoke_token("admin")
    else:
        ApiToken.objects.filter(name="admin").update(expires_at=timezone.now() - timedelta(1))

    with pytest.raises(CommandError) as refused:
        start_up(monkeypatch, kept)

    assert f"which is {retired}" in str(refused.value)
    assert "Rotate the secret" in str(refused.value)
    assert ApiToken.objects.get(name="admin").status == retired

    rotated = new_secret()
    start_up(monkeypatch, rotated)  # a new secret: the token works again, the old one never
    token = ApiToken.objects.get(name="admin")
    assert token.status == "active" and token.prefix == rotated[:8]


def test_start_up_again_with_an_active_secret_changes_nothing(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.auth.models import ApiToken

    kept = new_secret()
    first = ensure_token(name="admin", role=Role.ADMIN, secret=kept)
    start_up(monkeypatch, kept)
    again = ApiToken.objects.get(name="admin")
    assert (again.id, again.digest, again.status) == (first.id, first.digest, "active")
