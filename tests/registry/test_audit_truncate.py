"""The audit trail cannot be emptied with TRUNCATE, whoever asks (migration registry 0004)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.db import DatabaseError, connection, transaction

from web.registry import services

if TYPE_CHECKING:
    from web.registry.models import ModelVersion


@pytest.mark.parametrize("statement", ["TRUNCATE audit_event", "TRUNCATE audit_event CASCADE"])
def test_truncate_of_the_audit_trail_is_refused(
    transactional_db: Any, make_version: Callable[..., ModelVersion], statement: str
) -> None:
    """Committed audit rows survive TRUNCATE; the suite's own clean-up still empties the table
    after this test (a transactional one)."""
    from web.registry.models import AuditEvent

    services.move_alias(
        alias="challenger",
        version=make_version().version,
        reason="kept",
        actor=services.Actor("test"),
    )
    kept = AuditEvent.objects.count()

    with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"):  # noqa: SIM117
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)

    assert kept >= 1 and AuditEvent.objects.count() == kept
