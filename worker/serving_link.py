"""The worker's side of the registry-to-serving protocol in Redis (see algorithm.serving_state).

Until algorithm/serving_state.py is on this branch, these are the same Redis commands with the
same names: SET the desired state and PUBLISH it in one MULTI; wait until every replica that
reports serves a version (no report at all counts as served).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import redis

DESIRED_KEY = "textclf:registry:desired"
CHANGED_CHANNEL = "textclf:registry:changed"
REPORT_KEY_PREFIX = "textclf:serving:"


def announce(
    client: redis.Redis, *, champion: str | None, challenger: str | None, seq: int
) -> None:
    """Store the desired versions and tell every subscriber, in one transaction."""
    payload = json.dumps({"champion": champion, "challenger": challenger, "seq": seq,
                          "moved_at": datetime.now(UTC).isoformat()})  # fmt: skip
    with client.pipeline(transaction=True) as pipe:
        pipe.set(DESIRED_KEY, payload)
        pipe.publish(CHANGED_CHANNEL, payload)
        pipe.execute()


def wait_until_served(client: redis.Redis, version: str, timeout: float) -> bool:
    """Wait until every live replica reports serving `version`; False when timeout ran out."""
    deadline = time.monotonic() + timeout
    while True:
        keys = list(client.scan_iter(match=f"{REPORT_KEY_PREFIX}*", count=100))
        reports = [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []
        if all(report.get("version") == version for report in reports):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
