"""Rotating the service token under load: web keeps answering, no request fails.

The rotation as an operator runs it: the algorithm service accepts old and new
(`ALGORITHM_TOKENS=old,new`); web processes move from old to new (a new process takes the
traffic of one with the old token); then the algorithm side drops old, by replacing its
processes with ones that accept only new (settings are read once per process). A client keeps
predicting through web all along, and every answer must be 200.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from algorithm.ml.artifacts import publish_model_version
from algorithm.ml.training import TrainedModel
from tests.helpers import ServiceStarter, bearer, signing_keys, wait_until

pytestmark = pytest.mark.slow


class PredictLoad:
    """One client predicting through web, round robin over `targets`, in a thread.

    `headers` carry the client's web API token.
    """

    def __init__(self, target: str, headers: dict[str, str]) -> None:
        self.targets = [target]
        self.headers = headers
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self._stop.is_set():
                for target in list(self.targets):
                    try:
                        answer = client.post(f"{target}/api/predict/", json={"text": "a regex"})
                        ok = answer.status_code == 200 and answer.json()["label"]
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{target}: {exc!r}")
                        continue
                    if ok:
                        self.served[target] += 1
                    else:
                        self.failures.append(f"{target}: {answer.status_code} {answer.text[:200]}")

    def move_to(self, *targets: str, requests_each: int = 20) -> None:
        """Send the traffic to `targets`; return once each has served `requests_each` more."""
        before = {target: self.served[target] for target in targets}
        self.targets = list(targets)
        wait_until(
            lambda: all(self.served[t] >= before[t] + requests_each for t in targets),
            timeout=60,
            what=f"{requests_each} predictions from each of {targets}",
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_rotating_the_service_token_fails_no_request(
    start_service: ServiceStarter,
    fixture_training: tuple[TrainedModel, dict[str, Any]],
    redis_db_url: str,
    model_dir: Path,
    tmp_path: Path,
    test_database_url: str,
    transactional_db: Any,
    tokens: dict[str, str],
) -> None:
    model, metrics = fixture_training
    publish_model_version(
        model_dir, model, metrics=metrics, fingerprint={}, rows=0, signing_keys=signing_keys()
    )
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    shared = {"REDIS_URL": redis_db_url, "MODEL_DIR": str(model_dir)}
    web = {"DATABASE_URL": test_database_url}  # where the API tokens are

    # Side by side: web needs only the algorithm service's address to start.
    starting_both = start_service.launch("algorithm", ALGORITHM_TOKENS=f"{old},{new}", **shared)
    both = starting_both.url
    web_old = start_service("web", ALGORITHM_URL=both, ALGORITHM_TOKEN=old, **web)
    starting_both.wait()
    load = PredictLoad(web_old, bearer(tokens["reader"]))
    try:
        load.move_to(web_old)
        # The processes of both steps start side by side (seconds of imports each); each
        # takes traffic only in its step.
        # A web process with the new token takes over from the one with the old token...
        starting_web_new = start_service.launch(
            "web", ALGORITHM_URL=both, ALGORITHM_TOKEN=new, **web
        )
        # ...then the algorithm side drops old: its replacement accepts only new.
        only_new = start_service.launch("algorithm", ALGORITHM_TOKENS=new, **shared)
        starting_web_after = start_service.launch(
            "web", ALGORITHM_URL=only_new.url, ALGORITHM_TOKEN=new, **web
        )
        web_new = starting_web_new.wait()
        load.move_to(web_old, web_new)
        load.move_to(web_new)
        only_new.wait()
        web_after = starting_web_after.wait()
        load.move_to(web_new, web_after)
        load.move_to(web_after)
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]

    refused = httpx.post(
        f"{only_new.url}/predict", json={"text": "x"}, headers={"Authorization": f"Bearer {old}"}
    )
    assert refused.status_code == 401
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    assert logs and old not in logs and new not in logs
