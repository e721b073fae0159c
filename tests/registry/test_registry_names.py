"""The registry per model name: a second name's versions, aliases, history, rollback, retention
and audit are its own, and today's routes keep meaning `default`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core import serving_protocol
from tests.helpers import assert_error, bearer
from tests.web.conftest import InProcessWeb, asgi_db  # noqa: F401  (a fixture, used by name)
from web.registry import serving

Make = Callable[..., Any]
NAMED = "/api/models/sentiment"
JSON_TYPE = {"Content-Type": "application/json"}


def put_alias(api: Any, alias: str, version: str, prefix: str = "/api/models") -> Any:
    body = {"version": version, "reason": "release"}
    return api.put(f"{prefix}/aliases/{alias}/", body, format="json")


def listed(api: Any, path: str, **query: str) -> list[Any]:
    answer = api.get(path, query)
    assert answer.status_code == 200, answer.content
    return list(answer.json()["results"])


@pytest.fixture
def redis_keys() -> Iterator[list[str]]:
    """Keys a test writes in the session's Redis, deleted after it."""
    keys: list[str] = []
    yield keys
    if keys:
        serving.get_redis().delete(*keys)


def test_a_second_name_keeps_its_own_versions_aliases_history_and_rollback(
    api: Any, make_version: Make, champion_of: Callable[..., str | None], register_model: Any
) -> None:
    register_model("sentiment")
    d1 = make_version().version
    s1, s2 = (make_version(model="sentiment").version for _ in range(2))
    assert put_alias(api, "champion", d1).status_code == 200
    for version in (s1, s2):
        moved = put_alias(api, "champion", version, NAMED)
        assert moved.status_code == 200, moved.content
    assert moved.json()["model"] == "sentiment"
    assert moved.json()["aliases"]["previous"]["version"] == s1
    assert champion_of() == d1 and champion_of("sentiment") == s2

    assert [v["version"] for v in listed(api, f"{NAMED}/versions/")] == [s2, s1]
    assert [v["version"] for v in listed(api, "/api/models/versions/")] == [d1]
    assert api.get(f"{NAMED}/versions/{s1}/").json()["model"] == "sentiment"
    assert_error(api.get(f"{NAMED}/versions/{d1}/"), 404, "not_found")
    assert_error(api.get(f"/api/models/versions/{s1}/"), 404, "not_found")
    assert_error(put_alias(api, "challenger", d1, NAMED), 404, "not_found")
    assert_error(api.delete(f"/api/models/versions/{s1}/"), 404, "not_found")

    history = listed(api, f"{NAMED}/aliases/champion/history/")
    assert [h["after"]["version"] for h in history] == [s2, s1]
    assert [
        h["after"]["version"] for h in listed(api, "/api/models/aliases/champion/history/")
    ] == [d1]
    rolled = api.post(f"{NAMED}/aliases/champion/rollback/", {"reason": "bad"}, format="json")
    assert rolled.status_code == 200, rolled.content
    assert champion_of("sentiment") == s1 and champion_of() == d1
    # The default name answers the same under its name as on today's routes.
    assert (
        api.get("/api/models/default/aliases/").json()["aliases"]
        == api.get("/api/models/aliases/").json()["aliases"]
    )

    events = listed(api, "/api/audit/", model="sentiment")
    assert {e["model"] for e in events} == {"sentiment"}
    assert {e["action"] for e in events} == {"alias.move", "alias.rollback"}
    runs = listed(api, "/api/train/", model="sentiment")
    assert {r["id"] for r in runs} == {f"job-{s1}", f"job-{s2}"}
    assert {r["model"] for r in runs} == {"sentiment"}
    names = {n["name"]: n for n in listed(api, "/api/models/")}
    assert (names["default"]["champion"], names["sentiment"]["champion"]) == (d1, s1)


def test_retention_counts_the_champions_of_each_name(
    api: Any, make_version: Make, register_model: Any
) -> None:
    register_model("sentiment")
    s_old, s_mid, s_new, s_spare = (make_version(model="sentiment").version for _ in range(4))
    for version in (s_old, s_mid, s_new):
        put_alias(api, "champion", version, NAMED)
    for made in [make_version() for _ in range(6)]:  # default's champions do not count here
        put_alias(api, "champion", made.version)
    kept = assert_error(api.delete(f"{NAMED}/versions/{s_old}/"), 409, "conflict")
    assert "last 5 champions" in kept["detail"]
    assert api.delete(f"{NAMED}/versions/{s_spare}/?reason=unused").status_code == 204
    restored = api.post(f"{NAMED}/versions/{s_spare}/restore/", {"reason": "r"}, format="json")
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    actions = [e["action"] for e in listed(api, "/api/audit/", target=f"version:{s_spare}")]
    assert actions == ["version.restore", "version.delete"]
    assert {e["model"] for e in listed(api, "/api/audit/", target=f"version:{s_spare}")} == {
        "sentiment"
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/models/nope/versions/", 404),  # a name nobody registered
        ("/api/models/nope/aliases/", 404),
        ("/api/models/nope/aliases/champion/history/", 404),
        ("/api/models/Not_A_Slug/versions/", 404),  # not a name: no such route
        ("/api/models/aliases/aliases/", 404),  # reserved
        ("/api/models/default/aliases/king/", 404),  # no such alias
        ("/api/audit/?model=nope", 404),
        ("/api/audit/?model=Not_A_Slug", 400),
        ("/api/audit/?model=versions", 400),
        ("/api/train/?model=nope", 404),
        ("/api/train/?model=", 400),
    ],
)
def test_unknown_names_are_404_and_bad_filters_400(api: Any, path: str, status: int) -> None:
    assert_error(api.get(path), status)


def test_rollback_and_moves_of_an_unknown_name_are_404(api: Any) -> None:
    rollback = api.post("/api/models/nope/aliases/champion/rollback/", {"reason": "r"}, "json")
    assert_error(rollback, 404, "not_found")
    assert_error(put_alias(api, "challenger", "v1", "/api/models/nope"), 404, "not_found")


def test_a_token_limited_to_some_names_sees_and_moves_only_those(
    api: Any, make_version: Make, register_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model("sentiment")
    register_model("topic")
    d1, s1 = make_version().version, make_version(model="sentiment").version
    put_alias(api, "champion", d1)
    put_alias(api, "champion", s1, NAMED)
    limit_scope(monkeypatch, "sentiment")
    assert [n["name"] for n in listed(api, "/api/models/")] == ["sentiment"]
    assert_error(api.get("/api/models/versions/"), 403, "forbidden")
    assert_error(api.get("/api/models/topic/aliases/"), 403, "forbidden")
    assert_error(api.get("/api/models/unknown/aliases/"), 403, "forbidden")  # names stay secret
    assert_error(put_alias(api, "challenger", d1), 403, "forbidden")
    assert_error(api.get("/api/audit/", {"model": "default"}), 403, "forbidden")
    assert {e["model"] for e in listed(api, "/api/audit/")} == {"sentiment"}
    assert {r["model"] for r in listed(api, "/api/train/")} == {"sentiment"}
    assert put_alias(api, "challenger", s1, NAMED).status_code == 200


def test_replicas_that_have_not_loaded_a_name_are_not_failing_it(
    api: Any, make_version: Make, register_model: Any, redis_keys: list[str]
) -> None:
    register_model("sentiment")
    s1 = make_version(model="sentiment").version
    put_alias(api, "champion", s1, NAMED)
    reports = [
        serving_protocol.ReplicaReport(
            replica="host:1",
            version=None,
            models={"sentiment": serving_protocol.ModelReport(version=s1, memory_bytes=2048)},
        ),
        serving_protocol.ReplicaReport(replica="host:2", version=None),
    ]
    for report in reports:
        serving_protocol.report(serving.get_redis(), report)
        redis_keys.append(serving_protocol.report_key(report.replica))
    overview = api.get(f"{NAMED}/aliases/").json()
    replicas = {r["replica"]: r for r in overview["replicas"]}
    assert replicas["host:1"]["serves_champion"] is True
    assert replicas["host:1"]["memory_bytes"] == 2048
    assert (replicas["host:2"]["holds_model"], replicas["host:2"]["serves_champion"]) == (
        False,
        None,
    )
    assert replicas["host:2"]["error"] is None and overview["in_sync"] is True
    sentiment = next(n for n in listed(api, "/api/models/") if n["name"] == "sentiment")
    assert (sentiment["replicas_holding"], sentiment["replicas_serving_champion"]) == (1, 1)


def test_each_name_shows_its_own_challengers_agreement(
    api: Any, make_version: Make, register_model: Any, redis_keys: list[str]
) -> None:
    register_model("sentiment")
    champion, challenger = (make_version(model="sentiment").version for _ in range(2))
    put_alias(api, "champion", champion, NAMED)
    put_alias(api, "challenger", challenger, NAMED)
    counts = serving_protocol.ShadowCounts

    def holding(agreed: int) -> dict[str, serving_protocol.ModelReport]:
        held = serving_protocol.ModelReport(
            version=champion, challenger=challenger, shadow=counts(compared=10, agreed=agreed)
        )
        return {"sentiment": held}

    reports = [  # `default`'s own counts, at the top, must not reach the named model's
        serving_protocol.ReplicaReport(
            replica="host:1", version=None, shadow=counts(compared=50, agreed=5), models=holding(9)
        ),
        serving_protocol.ReplicaReport(replica="host:2", version=None, models=holding(8)),
        serving_protocol.ReplicaReport(replica="host:3", version=None),
    ]
    for report in reports:
        serving_protocol.report(serving.get_redis(), report)
        redis_keys.append(serving_protocol.report_key(report.replica))

    named = api.get(f"{NAMED}/aliases/").json()
    assert named["aliases"]["challenger"]["shadow"] == {
        "compared": 20,
        "agreed": 17,
        "agreement_rate": 0.85,
    }
    replicas = {r["replica"]: r["shadow"] for r in named["replicas"]}
    assert replicas == {
        "host:1": {"compared": 10, "agreed": 9},
        "host:2": {"compared": 10, "agreed": 8},
        "host:3": None,  # it does not hold the model
    }
    default = api.get("/api/models/aliases/").json()
    assert default["aliases"]["challenger"]["shadow"]["compared"] == 50


def test_each_name_is_announced_on_its_own_key(
    api: Any,
    make_version: Make,
    register_model: Any,
    redis_keys: list[str],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reconciler hands its own thread's connection back; here it is the test's transaction.
    monkeypatch.setattr(serving, "close_old_connections", lambda: None)
    client = serving.get_redis()
    redis_keys.append(serving_protocol.desired_key("sentiment"))
    register_model("sentiment")
    # A name without a champion still gets its key: that is how the replicas know it exists.
    assert serving.reannounce_if_behind() is True
    empty = serving_protocol.read_desired(client, "sentiment")
    assert empty is not None and empty.champion is None
    assert serving.reannounce_if_behind() is False  # nothing behind any more
    s1 = make_version(model="sentiment").version
    with django_capture_on_commit_callbacks(execute=True):
        assert put_alias(api, "champion", s1, NAMED).status_code == 200
    announced = serving_protocol.read_desired(client, "sentiment")
    assert announced is not None and (announced.model, announced.champion) == ("sentiment", s1)
    assert serving_protocol.read_desired(client) is None  # default's key was not touched


def limit_scope(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make every token limited to `names` (the scope module's two functions, as web uses them)."""
    from web.auth import scope
    from web.errors import Forbidden

    only = frozenset(names)

    def require_model(request: Any, model: str) -> None:
        if model not in only:
            raise Forbidden(f"This token may not use model {model!r}.")

    monkeypatch.setattr(scope, "allowed_models", lambda request: only)
    monkeypatch.setattr(scope, "require_model", require_model)


@pytest.mark.usefixtures("asgi_db")
def test_training_names_its_model_in_the_body(
    tokens: dict[str, str], register_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """web checks the body and the name, then asks the algorithm service for that name's job."""
    register_model("sentiment")
    asked: list[bytes] = []

    def algorithm(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # a job's state: its id says its model here
            model = request.url.path.removeprefix("/train/job-")
            return httpx.Response(200, json={"job_id": f"job-{model}", "model": model})
        assert (request.method, request.url.path) == ("POST", "/train")
        asked.append(request.content)
        model = json.loads(request.content)["model"] if request.content else "default"
        return httpx.Response(202, json={"job_id": f"job-{model}", "model": model})

    web = InProcessWeb(bearer(tokens["editor"]))
    train: list[dict[str, Any]] = [
        {"method": "POST", "url": "/api/train/"},
        {"method": "POST", "url": "/api/train/", "json": {}},
        {"method": "POST", "url": "/api/train/", "json": {"model": "sentiment"}},
        {"method": "POST", "url": "/api/train/", "json": {"model": "Not_A_Slug"}},
        {"method": "POST", "url": "/api/train/", "json": {"model": "nope"}},
        {"method": "POST", "url": "/api/train/", "json": {"model": "sentiment", "rows": 5}},
        {"method": "POST", "url": "/api/train/", "json": ["sentiment"]},
        {"method": "POST", "url": "/api/train/", "content": b"{", "headers": JSON_TYPE},
    ]
    plain, empty, named, invalid, unknown, extra, listed_body, broken = web.send(algorithm, *train)
    assert asked == [b"", b"", b'{"model":"sentiment"}']  # default asks with no body, as before
    assert (plain.status_code, plain.json()["model"]) == (202, "default")
    assert empty.json()["job_id"] == "job-default"
    assert (named.status_code, named.json()["model"]) == (202, "sentiment")
    assert named.headers["Location"] == "/api/train/job-sentiment/"
    assert "model" in assert_error(invalid, 400, "validation_error")["fields"]
    assert_error(unknown, 404, "not_found")
    assert_error(extra, 400, "invalid_request")
    assert_error(listed_body, 400, "invalid_request")
    assert_error(broken, 400, "invalid_json")

    limit_scope(monkeypatch, "sentiment")
    default_job, own_job, default_train, unknown_train = web.send(
        algorithm,
        {"method": "GET", "url": "/api/train/job-default/"},
        {"method": "GET", "url": "/api/train/job-sentiment/"},
        {"method": "POST", "url": "/api/train/"},
        {"method": "POST", "url": "/api/train/", "json": {"model": "nope"}},
    )
    assert_error(default_job, 403, "forbidden")
    assert own_job.status_code == 200
    assert_error(default_train, 403, "forbidden")
    assert_error(unknown_train, 403, "forbidden")  # whether it exists stays unsaid
    assert len(asked) == 3  # nothing more was asked of the algorithm service


def test_the_admin_rolls_back_the_name_of_the_alias_it_was_run_on(
    admin_client: Any,
    api: Any,
    make_version: Make,
    register_model: Any,
    champion_of: Callable[..., str | None],
) -> None:
    from web.registry.models import Alias

    register_model("sentiment")
    d1, d2 = (make_version().version for _ in range(2))
    s1, s2 = (make_version(model="sentiment").version for _ in range(2))
    for version in (d1, d2):
        put_alias(api, "champion", version)
    for version in (s1, s2):
        put_alias(api, "champion", version, NAMED)
    row = Alias.objects.get(model="sentiment", name="champion")
    form = {"action": "rollback_champion", "_selected_action": str(row.pk), "reason": "bad"}
    page = admin_client.post("/admin/registry/alias/", {**form, "index": "0"}, follow=True)
    assert "Rolled back sentiment" in page.content.decode()
    assert (champion_of("sentiment"), champion_of()) == (s1, d2)
    listed_page = admin_client.get("/admin/registry/alias/", {"model": "sentiment"})
    assert listed_page.status_code == 200 and s1 in listed_page.content.decode()
