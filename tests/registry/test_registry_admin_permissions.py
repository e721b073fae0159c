"""The registry's admin actions over HTTP (Django's test client, the real admin site and database):
view permission shows the lists, actions need change permission, force needs a superuser."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from web.registry import services

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.test import Client

    from web.registry.models import ModelVersion

VERSIONS = "/admin/registry/modelversion/"
ALIASES = "/admin/registry/alias/"


@pytest.fixture
def released(make_version: Callable[..., ModelVersion]) -> tuple[str, str, str]:
    """(previous, champion, worse): a released champion, the one before it, and a version the
    gate refuses (macro-F1 far below the champion's)."""
    previous, champion, worse = (make_version(macro_f1=f1).version for f1 in (0.80, 0.85, 0.40))
    for version in (previous, champion):
        services.move_alias(
            alias="champion", version=version, reason="trained", actor=services.Actor("worker")
        )
    return previous, champion, worse


def staff_user(*codenames: str) -> User:
    """A staff user (not a superuser) with exactly these registry permissions."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(f"staff-{'-'.join(codenames)}")  # no password: no hashing
    user.is_staff = True
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
    )
    return user


def run_action(client: Client, page: str, action: str, selected: str, **form: str) -> str:
    """POST an admin action on one row, as the list's form does; the page's text after it."""
    data = {"action": action, "_selected_action": selected, "index": "0", "reason": "test", **form}
    answer = client.post(page, data, follow=True)
    assert answer.status_code == 200
    return answer.content.decode()


def test_view_only_staff_reads_the_registry_but_runs_no_action(
    client: Client, released: tuple[str, str, str], champion_of: Callable[[], str | None]
) -> None:
    from web.registry.models import Alias, ModelVersion

    previous, champion, worse = released
    client.force_login(staff_user("view_modelversion", "view_alias"))
    champion_row = str(Alias.objects.get(model="default", name="champion").pk)

    listed = client.get(VERSIONS)
    assert listed.status_code == 200 and champion in listed.content.decode()
    for page, action in ((VERSIONS, "make_champion"), (ALIASES, "rollback_champion")):
        assert f'value="{action}"' not in client.get(page).content.decode()

    run_action(client, ALIASES, "rollback_champion", champion_row)
    run_action(client, VERSIONS, "make_champion", previous)
    run_action(client, VERSIONS, "soft_delete", worse)
    assert champion_of() == champion
    assert ModelVersion.objects.get(version=worse).deleted_at is None


def test_change_permission_runs_actions_and_only_a_superuser_forces_past_the_gate(
    client: Client,
    released: tuple[str, str, str],
    champion_of: Callable[[], str | None],
    django_user_model: Any,
) -> None:
    from web.registry.models import Alias

    previous, champion, worse = released
    client.force_login(staff_user("view_modelversion", "change_modelversion"))

    page = run_action(client, VERSIONS, "make_champion", worse, force="on")
    assert "only a superuser may force" in page
    assert champion_of() == champion
    run_action(client, VERSIONS, "make_challenger", previous)
    assert Alias.objects.get(name="challenger").version_id == previous

    client.force_login(django_user_model.objects.create_superuser("root-admin"))
    run_action(client, VERSIONS, "make_champion", worse, force="on")
    assert champion_of() == worse
