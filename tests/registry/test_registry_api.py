"""The registry API over a real database: versions, alias moves, the gate, rollback, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection

from tests.helpers import assert_error

Make = Callable[..., Any]
REASON = "release 42"


def put_alias(api: Any, alias: str, **body: Any) -> Any:
    return api.put(f"/api/models/aliases/{alias}/", {"reason": REASON, **body}, format="json")


def test_versions_are_listed_newest_first_with_scores_and_aliases(
    api: Any, make_version: Make
) -> None:
    old, new = make_version(macro_f1=0.7), make_version(macro_f1=0.9)
    assert put_alias(api, "champion", version=new.version).status_code == 200
    listed = api.get("/api/models/versions/").json()["results"]
    assert [v["version"] for v in listed] == [new.version, old.version]
    assert listed[0]["aliases"] == ["champion"] and listed[0]["macro_f1"] == 0.9
    only = api.get("/api/models/versions/", {"alias": "champion"}).json()["results"]
    assert [v["version"] for v in only] == [new.version]
    detail = api.get(f"/api/models/versions/{new.version}/").json()
    assert detail["metrics"]["per_label"]["a"]["f1"] == 0.9
    assert detail["lineage"]["run"]["id"] == f"job-{new.version}"
    assert detail["aliases"] == ["champion"]
    assert_error(api.get("/api/models/versions/nope/"), 404, "not_found")
    assert_error(api.get("/api/models/versions/", {"deleted": "maybe"}), 400)
    assert_error(api.get("/api/models/versions/", {"created_after": "yesterday"}), 400)


def test_a_champion_move_records_previous_and_the_audit_row(api: Any, make_version: Make) -> None:
    first, second = make_version(macro_f1=0.80), make_version(macro_f1=0.795)
    put_alias(api, "champion", version=first.version)
    moved = put_alias(api, "champion", version=second.version, expected_version=first.version)
    assert moved.status_code == 200, moved.content
    aliases = moved.json()["aliases"]
    assert aliases["champion"]["version"] == second.version  # within the 0.01 tolerance
    assert aliases["previous"]["version"] == first.version
    audit = api.get("/api/audit/", {"target": "alias:champion"}).json()["results"]
    assert audit[0]["before"] == {"version": first.version}
    assert audit[0]["after"] == {"version": second.version}
    assert audit[0]["actor"].startswith("token:test-admin-") and audit[0]["reason"] == REASON
    history = api.get("/api/models/aliases/champion/history/").json()["results"]
    assert [h["after"]["version"] for h in history] == [second.version, first.version]


def test_a_worse_champion_is_refused_with_the_gate_report_unless_forced(
    api: Any, make_version: Make, champion_of: Callable[[], str | None]
) -> None:
    good, worse = make_version(macro_f1=0.9), make_version(macro_f1=0.5)
    put_alias(api, "champion", version=good.version)
    body = assert_error(put_alias(api, "champion", version=worse.version), 422, "gate_failed")
    assert body["report"]["candidate"] == {"version": worse.version, "macro_f1": 0.5}
    assert body["report"]["champion"]["macro_f1"] == 0.9 and not body["report"]["promoted"]
    assert champion_of() == good.version
    forced = put_alias(api, "champion", version=worse.version, force=True)
    assert forced.status_code == 200 and champion_of() == worse.version
    last = api.get("/api/audit/").json()["results"][0]
    assert last["action"] == "alias.force_move" and last["reason"] == REASON


def test_a_stale_expected_version_answers_409(
    api: Any, make_version: Make, champion_of: Callable[[], str | None]
) -> None:
    a, b, c = make_version(), make_version(), make_version()
    put_alias(api, "champion", version=a.version, expected_version=None)
    put_alias(api, "champion", version=b.version, expected_version=a.version)
    stale = put_alias(api, "champion", version=c.version, expected_version=a.version)
    assert assert_error(stale, 409, "conflict")["current_version"] == b.version
    assert champion_of() == b.version


def test_rollback_swaps_champion_and_previous(
    api: Any, make_version: Make, champion_of: Callable[[], str | None]
) -> None:
    a, b = make_version(), make_version()
    assert_error(
        api.post("/api/models/aliases/champion/rollback/", {"reason": "x"}, format="json"),
        409,
        "conflict",
    )
    put_alias(api, "champion", version=a.version)
    put_alias(api, "champion", version=b.version)
    answer = api.post(
        "/api/models/aliases/champion/rollback/", {"reason": "bad release"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert champion_of() == a.version
    assert answer.json()["aliases"]["previous"]["version"] == b.version
    event = api.get("/api/audit/", {"action": "alias.rollback"}).json()["results"]
    assert {e["target"] for e in event} == {"alias:champion", "alias:previous"}
    assert all(e["reason"] == "bad release" for e in event)


def test_the_challenger_can_be_set_and_cleared(api: Any, make_version: Make) -> None:
    a = make_version()
    assert put_alias(api, "challenger", version=a.version).status_code == 200
    cleared = put_alias(api, "challenger", version=None)
    assert cleared.json()["aliases"]["challenger"]["version"] is None
    assert_error(put_alias(api, "champion", version=None), 409)


@pytest.mark.parametrize(
    "body",
    [
        {"version": "v"},  # no reason
        {"version": "v", "reason": "r", "colour": "blue"},  # unknown field
        {"version": ["v"], "reason": "r"},
        {"version": "v", "reason": "r", "force": "perhaps"},
    ],
)
def test_bad_alias_bodies_answer_400(api: Any, body: dict[str, Any]) -> None:
    assert_error(api.put("/api/models/aliases/champion/", body, format="json"), 400)


def test_unknown_aliases_and_versions_answer_404(api: Any) -> None:
    assert_error(put_alias(api, "king", version="v"), 404)
    assert_error(put_alias(api, "champion", version="no-such-version"), 404, "not_found")


def test_delete_is_soft_refused_for_aliases_and_recent_champions_and_restorable(
    api: Any, make_version: Make, settings: Any
) -> None:
    from web.registry.models import ModelVersion

    versions = [make_version(macro_f1=0.8) for _ in range(8)]
    for made in versions[:6]:
        put_alias(api, "champion", version=made.version)
    # versions[5] is champion, versions[4] previous, versions[1..5] the last five champions.
    assert_error(api.delete(f"/api/models/versions/{versions[5].version}/"), 409)
    recent = assert_error(api.delete(f"/api/models/versions/{versions[2].version}/"), 409)
    assert "last 5 champions" in recent["detail"]
    assert api.delete(f"/api/models/versions/{versions[0].version}/?reason=old").status_code == 204
    assert api.delete(f"/api/models/versions/{versions[7].version}/").status_code == 204
    live = [v["version"] for v in api.get("/api/models/versions/").json()["results"]]
    assert versions[7].version not in live and versions[0].version not in live
    gone = api.get("/api/models/versions/", {"deleted": "true"}).json()["results"]
    assert {v["version"] for v in gone} == {versions[0].version, versions[7].version}
    assert_error(api.delete(f"/api/models/versions/{versions[7].version}/"), 409)
    assert_error(put_alias(api, "challenger", version=versions[7].version), 409)
    restored = api.post(
        f"/api/models/versions/{versions[7].version}/restore/", {"reason": "needed"}, format="json"
    )
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert_error(
        api.post(
            f"/api/models/versions/{versions[7].version}/restore/",
            {"reason": "again"},
            format="json",
        ),
        409,
    )
    ModelVersion.objects.filter(version=versions[0].version).update(
        files_removed_at="2026-11-02T00:00Z"
    )
    body = assert_error(
        api.post(
            f"/api/models/versions/{versions[0].version}/restore/",
            {"reason": "too late"},
            format="json",
        ),
        409,
    )
    assert "removed" in body["detail"]
    actions = [
        e["action"]
        for e in api.get("/api/audit/", {"target": f"version:{versions[7].version}"}).json()[
            "results"
        ]
    ]
    assert actions == ["version.restore", "version.delete"]


def test_the_audit_trail_refuses_updates_and_deletes(api: Any, make_version: Make) -> None:
    put_alias(api, "challenger", version=make_version().version)
    for statement in ("UPDATE audit_event SET reason = 'rewritten'", "DELETE FROM audit_event"):
        with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
            cursor.execute("SAVEPOINT audit_check")
            try:
                cursor.execute(statement)
            finally:
                cursor.execute("ROLLBACK TO SAVEPOINT audit_check")
