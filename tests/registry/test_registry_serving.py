"""Web's side of the Redis protocol: names agree with the algorithm's, moves are announced."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.test import RequestFactory

from core import serving_protocol
from tests.algorithm.registry_helpers import fit_quickly, forge, publish, refused_loads
from tests.helpers import assert_error, wait_until
from web.auth.roles import Role
from web.registry import serving

Make = Callable[..., Any]


def test_a_committed_move_is_announced_to_the_replicas(
    transactional_db: Any, api: Any, make_version: Make
) -> None:
    client = serving.get_redis()
    pubsub = client.pubsub()
    pubsub.subscribe(serving_protocol.CHANGED_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscription confirmation
    a, b = make_version(), make_version()
    seqs = []
    for made in (a, b):
        moved = api.put(
            "/api/models/aliases/champion/",
            {"version": made.version, "reason": "test"},
            format="json",
        )
        assert moved.status_code == 200, moved.content
        desired = serving_protocol.read_desired(client)
        assert desired is not None and desired.champion == made.version
        message = pubsub.get_message(timeout=2)
        assert message is not None
        assert serving_protocol.parse_desired(message["data"]) == desired  # parses as SERVING's
        seqs.append(desired.seq)
    assert seqs[1] > seqs[0]
    pubsub.close()
    assert api.get("/api/models/aliases/").json()["announced"]["champion"] == b.version


def test_the_alias_list_shows_each_replica_and_its_load_error(api: Any, make_version: Make) -> None:
    good, broken = make_version(), make_version()
    api.put(
        "/api/models/aliases/champion/", {"version": good.version, "reason": "r"}, format="json"
    )
    client: redis.Redis = serving.get_redis()
    reports = [
        serving_protocol.ReplicaReport(replica="host:1", version=good.version),
        serving_protocol.ReplicaReport(
            replica="host:2", version=None, error="sha256 mismatch", error_version=broken.version
        ),
    ]
    try:
        for report in reports:
            serving_protocol.report(client, report)
        overview = api.get("/api/models/aliases/").json()
    finally:
        client.delete(*(serving_protocol.report_key(r.replica) for r in reports))
    replicas = {r["replica"]: r for r in overview["replicas"]}
    assert replicas["host:1"]["serves_champion"] is True
    assert replicas["host:2"]["error"] == "sha256 mismatch"
    assert replicas["host:2"]["error_version"] == broken.version
    assert overview["in_sync"] is False


def test_an_editor_may_move_the_challenger_but_not_the_champion(make_version: Make) -> None:
    from web.registry.views import AliasDetail

    made = make_version()
    view = AliasDetail.as_view()

    def put(alias: str, role: Role, **extra: Any) -> Any:
        body = json.dumps({"version": made.version, "reason": "r", **extra})
        request = RequestFactory().put(
            f"/api/models/aliases/{alias}/", body, content_type="application/json"
        )
        request.role = role  # set by the authentication middleware
        request.actor = f"token:{role.label}-token"
        response = view(request, alias=alias)
        response.json = lambda: json.loads(response.content)  # as the test client's answers
        return response

    assert_error(put("champion", Role.EDITOR), 403, "forbidden")
    assert_error(put("challenger", Role.EDITOR, force=True), 403, "forbidden")
    assert put("challenger", Role.EDITOR).status_code == 200
    assert put("champion", Role.ADMIN).status_code == 200
    from web.registry.models import AuditEvent

    assert AuditEvent.objects.filter(actor="token:admin-token", target="alias:champion").exists()


@pytest.mark.slow
def test_a_replica_refusing_a_forged_champion_keeps_the_old_one_and_the_alias_list_says_why(
    transactional_db: Any,
    api: Any,
    make_version: Make,
    start_service: Callable[..., str],
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    service_headers: dict[str, str],
) -> None:
    halves = [fit_quickly(fixture_corpus, slice(start, None, 2)) for start in (0, 1)]
    good, forged = (publish(model_dir, model) for model in halves)
    for version in (good, forged):
        make_version(version=version)

    def move(version: str) -> None:
        body = {"version": version, "reason": "test"}
        moved = api.put("/api/models/aliases/champion/", body, format="json")
        assert moved.status_code == 200, moved.content

    move(good)
    url = start_service("algorithm", MODEL_DIR=str(model_dir))
    # The other model's pickles, and a manifest naming their digests that nobody could sign.
    forge(model_dir, forged, halves[0])
    move(forged)

    def refused() -> dict[str, Any] | None:
        overview = api.get("/api/models/aliases/").json()
        errors = [replica["error_version"] for replica in overview["replicas"]]
        return overview if errors == [forged] else None

    overview = wait_until(refused, timeout=10, what="the replica reporting its refusal")
    (replica,) = overview["replicas"]
    assert replica["version"] == good and replica["serves_champion"] is False
    assert "not signed" in replica["error"] and overview["in_sync"] is False
    answer = httpx.post(f"{url}/predict", json={"text": "Python"}, headers=service_headers)
    assert answer.status_code == 200 and answer.json()["model_version"] == good
    assert refused_loads(f"{url}/metrics", "unsigned") == 1
