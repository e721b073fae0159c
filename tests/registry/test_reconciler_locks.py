"""The registry reconciler's look gives up behind a lock instead of queueing behind it."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.db import OperationalError

from web.registry.serving import RECONCILE_LOCK_TIMEOUT_MS, reannounce_if_behind


def test_a_look_behind_a_table_lock_gives_up_at_once_and_the_next_one_reads(
    transactional_db: Any, test_database_url: str
) -> None:
    """A migration or a test's TRUNCATE holds a registry table: the look fails fast (and the
    reconciler looks again a second later) instead of waiting, or deadlocking, behind it."""
    with psycopg.connect(test_database_url) as holder:
        holder.execute("LOCK TABLE audit_event IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            reannounce_if_behind()
        waited = time.monotonic() - started
    assert RECONCILE_LOCK_TIMEOUT_MS / 1000 <= waited < 1.0  # deadlock_timeout is 1 s
