"""Two people move the champion at the same moment, both from the version they saw: one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_two_concurrent_moves_with_the_same_expected_version_one_wins_one_conflicts(
    web_without_algorithm: str,  # moving aliases needs no algorithm service
    transactional_db: Any,
    make_version: Callable[..., Any],
    web_client: Callable[..., httpx.Client],
) -> None:
    from web.registry.models import Alias, AuditEvent

    web = web_client(web_without_algorithm)
    seen, first, second = make_version(), make_version(), make_version()
    start = web.put(
        "/api/models/aliases/champion/", json={"version": seen.version, "reason": "start"}
    )
    assert start.status_code == 200, start.text

    def move(
        target: str, expected: str, barrier: threading.Barrier, answers: dict[str, httpx.Response]
    ) -> None:
        barrier.wait()
        answers[target] = web.put(
            "/api/models/aliases/champion/",
            json={"version": target, "expected_version": expected, "reason": "race"},
            timeout=30,
        )

    for _ in range(5):  # several rounds: the race must go the same way every time
        barrier = threading.Barrier(2)
        answers: dict[str, httpx.Response] = {}
        expected = Alias.objects.get(name="champion").version_id
        targets = [v.version for v in (seen, first, second) if v.version != expected][:2]
        threads = [
            threading.Thread(target=move, args=(t, expected, barrier, answers)) for t in targets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses == [200, 409], {t: a.text for t, a in answers.items()}
        winner = next(t for t, a in answers.items() if a.status_code == 200)
        loser = next(a for a in answers.values() if a.status_code == 409)
        assert loser.json()["error"] == "conflict" and loser.json()["current_version"] == winner
        assert Alias.objects.get(name="champion").version_id == winner
    # Exactly one audited champion move per round (plus the start).
    assert AuditEvent.objects.filter(target="alias:champion").count() == 6
