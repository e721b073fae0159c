"""The registry with every service running: rollback under load, no 503 after a job, a bad replica.

These need the algorithm processes to follow the desired versions in Redis and report what they
serve (the serving side of the protocol); where they do not report, the tests say so and skip.

One algorithm service (two replicas) and one web serve the whole module, on a Redis database and
a model root of the module; each test gets its own Celery worker, operator token, rows and
versions, and meets no queue, job or desired state of an earlier test (`stack` clears them).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from algorithm.ml import artifacts
from core import serving_protocol
from tests.helpers import ServiceStarter, bearer, wait_until

pytestmark = pytest.mark.slow
CLIENTS = 64
TEXT = "a library of functions for image processing and display"


OPERATOR = "registry-operator"  # the admin token's name: the audit's actor is token:<name>
# The rows of the first trainings: every third row of the corpus (300, every label). Their models
# are only served, promoted and moved here, never judged, and train in half the time of all 900.
FIRST_ROWS = slice(0, None, 3)


@dataclass
class Stack:
    web: str
    headers: dict[str, str]  # the operator's admin token, on every call to web
    algorithm: str
    redis: redis.Redis
    start_worker: Callable[..., Any]  # on the stack's Redis and model root
    model_dir: Path
    api: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=self.web, headers=self.headers, timeout=30)

    def train(self, timeout: float = 180) -> dict[str, Any]:
        started = self.api.post("/api/train/")
        assert started.status_code == 202, started.text
        return self.wait_job(started.headers["Location"], timeout=timeout)

    def wait_job(self, location: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = self.api.get(location).json()
            return job if job["status"] in ("succeeded", "failed") else None

        return wait_until(finished, timeout=timeout, interval=0.02, what=f"{location} finished")

    def served(self) -> set[str | None]:
        return {report.version for report in serving_protocol.read_reports(self.redis)}


@dataclass(frozen=True)
class Services:
    """The module's algorithm service and web, and what they share: Redis and the model root."""

    web: str
    algorithm: str
    redis_url: str
    model_dir: Path


@pytest.fixture(scope="module")
def services(
    start_module_service: ServiceStarter,
    test_database_url: str,
    module_redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Services:
    model_dir = tmp_path_factory.mktemp("models")
    algorithm = start_module_service.launch(
        "algorithm", REDIS_URL=module_redis_url, MODEL_DIR=str(model_dir), ALGORITHM_WORKERS="2"
    )
    web = start_module_service(  # beside the algorithm service: it needs only its address
        "web",
        DATABASE_URL=test_database_url,
        ALGORITHM_URL=algorithm.url,
        REDIS_URL=module_redis_url,
    )
    return Services(
        web=web, algorithm=algorithm.wait(), redis_url=module_redis_url, model_dir=model_dir
    )


def forget_earlier_tests(client: redis.Redis) -> None:
    """Drop every key but the replicas' own reports and the queue's bindings: queued and
    unacknowledged tasks (a killed worker's long training would be delivered again), jobs, the
    training lock, the desired state. The reports stay: the replicas rewrite them only every
    few seconds."""
    kept = (serving_protocol.REPORT_KEY_PREFIX.encode(), b"_kombu.binding.")
    stale = [key for key in client.scan_iter(count=1000) if not key.startswith(kept)]
    if stale:
        client.delete(*stale)


@pytest.fixture
def stack(
    services: Services, start_worker: Callable[..., Any], transactional_db: Any
) -> Iterator[Stack]:
    from web.auth.roles import Role
    from web.auth.tokens import issue_token

    _, secret = issue_token(name=OPERATOR, role=Role.ADMIN)
    client = redis.Redis.from_url(services.redis_url)
    forget_earlier_tests(client)
    try:
        wait_until(
            lambda: serving_protocol.read_reports(client), timeout=6, what="a replica report"
        )
    except AssertionError:
        pytest.skip("the algorithm processes do not report what they serve (serving side)")

    def start_stack_worker(**env: str) -> Any:
        return start_worker(REDIS_URL=services.redis_url, MODEL_DIR=str(services.model_dir), **env)

    stack = Stack(
        web=services.web,
        headers=bearer(secret),
        algorithm=services.algorithm,
        redis=client,
        start_worker=start_stack_worker,
        model_dir=services.model_dir,
    )
    yield stack
    stack.api.close()
    client.close()


@dataclass
class Load:
    statuses: dict[int, int] = field(default_factory=dict)
    versions: list[tuple[float, str]] = field(default_factory=list)
    stop: bool = False


async def predict_forever(stack: Stack, load: Load) -> None:
    async with httpx.AsyncClient(base_url=stack.web, headers=stack.headers, timeout=30) as client:
        while not load.stop:
            answer = await client.post("/api/predict/", json={"text": TEXT})
            load.statuses[answer.status_code] = load.statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 200:
                load.versions.append((time.monotonic(), answer.json()["model_version"]))


async def wait_for_answers(load: Load, count: int) -> None:
    """Until `count` predictions have been answered (10 s at most)."""
    deadline = time.monotonic() + 10
    while sum(load.statuses.values()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} answers in 10 s: {load.statuses}"
        await asyncio.sleep(0.01)


def test_rollback_under_64_clients_while_training_fails_nothing_and_serves_within_2s(
    stack: Stack,
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
) -> None:
    insert_rows(fixture_corpus[FIRST_ROWS])
    stack.start_worker()
    first = stack.train()
    second = stack.train()  # the same rows: the gate lets it through
    assert first["promoted"] and second["promoted"], (first, second)
    # Enough rows that the next training runs for the whole rollback.
    insert_rows(
        [(f"{text} variant {i}", label) for i in range(40) for text, label in fixture_corpus]
    )
    started = stack.api.post("/api/train/").json()
    wait_until(
        lambda: stack.api.get(f"/api/train/{started['job_id']}/").json()["status"] == "running",
        timeout=30,
        what="the long training running",
    )

    async def scenario() -> tuple[Load, float, float]:
        load = Load()
        clients = [asyncio.create_task(predict_forever(stack, load)) for _ in range(CLIENTS)]
        # The load is under way (each client sends its next prediction once it has an answer):
        # the rollback comes while all 64 keep predicting.
        await wait_for_answers(load, CLIENTS)
        async with httpx.AsyncClient(base_url=stack.web, headers=stack.headers, timeout=30) as api:
            answer = await api.post(
                "/api/models/aliases/champion/rollback/", json={"reason": "bad release under load"}
            )
            moved_at = time.monotonic()
            assert answer.status_code == 200, answer.text
        while not any(t > moved_at and v == first["model_version"] for t, v in load.versions):
            assert time.monotonic() - moved_at < 10, "the rollback never reached the predictions"
            await asyncio.sleep(0.01)
        served_at = next(
            t for t, v in load.versions if t > moved_at and v == first["model_version"]
        )
        await asyncio.sleep(2)
        load.stop = True
        await asyncio.gather(*clients)
        return load, moved_at, served_at

    load, moved_at, served_at = asyncio.run(scenario())
    assert set(load.statuses) == {200}, load.statuses  # zero failed requests
    assert served_at - moved_at < 2.0
    late = [v for t, v in load.versions if t > served_at + 2.0]
    assert set(late) == {first["model_version"]}  # every replica follows, none stays behind
    assert stack.api.get(f"/api/train/{started['job_id']}/").json()["status"] == "running"
    audit = stack.api.get("/api/audit/", params={"action": "alias.rollback"}).json()
    assert {(e["actor"], e["reason"]) for e in audit["results"]} == {
        (f"token:{OPERATOR}", "bad release under load")
    }


def test_a_succeeded_promoted_job_is_served_by_the_very_next_prediction(
    stack: Stack,
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
) -> None:
    insert_rows(fixture_corpus[FIRST_ROWS])
    stack.start_worker()
    for _ in range(2):
        job = stack.train()
        assert job["status"] == "succeeded" and job["promoted"], job
        for _ in range(20):  # several connections: each may land on another process
            answer = httpx.post(
                f"{stack.web}/api/predict/", json={"text": TEXT}, headers=stack.headers
            )
            assert answer.status_code == 200, answer.text  # never 503 no_model
            assert answer.json()["model_version"] == job["model_version"]


def test_a_replica_that_cannot_load_the_champion_shows_it_and_keeps_serving(
    stack: Stack,
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
) -> None:
    insert_rows(fixture_corpus[FIRST_ROWS])
    stack.start_worker(PROMOTION_POLICY="manual")
    first = stack.train()
    kept = stack.train()
    assert first["promoted"] and kept["promoted"] is False
    broken = kept["model_version"]
    (stack.model_dir / broken / artifacts.CLASSIFIER_FILE).write_bytes(b"not a pickle")
    moved = stack.api.put(
        "/api/models/aliases/champion/", json={"version": broken, "reason": "try the new one"}
    )
    assert moved.status_code == 200, moved.text

    def failing() -> list[dict[str, Any]] | None:
        replicas = stack.api.get("/api/models/aliases/").json()["replicas"]
        ok = replicas and all(r["error_version"] == broken and r["error"] for r in replicas)
        return replicas if ok else None

    replicas = wait_until(failing, timeout=10, what="every replica reports the failed load")
    assert all(r["version"] == first["model_version"] for r in replicas)
    assert not any(r["serves_champion"] for r in replicas)
    answer = stack.api.post("/api/predict/", json={"text": TEXT})
    assert answer.status_code == 200 and answer.json()["model_version"] == first["model_version"]


def all_serve(stack: Stack, version: str) -> bool:
    return stack.served() == {version}


def time_moves(stack: Stack, versions: list[str], moves: int) -> list[float]:
    """Seconds from each champion move through the API to every replica serving it."""
    timings = []
    for index in range(moves):
        target = versions[index % 2]
        started = time.monotonic()
        answer = stack.api.put(
            "/api/models/aliases/champion/", json={"version": target, "reason": "timing"}
        )
        assert answer.status_code == 200, answer.text
        wait_until(
            functools.partial(all_serve, stack, target),
            timeout=5,
            interval=0.005,
            what=f"every replica on {target}",
        )
        timings.append(time.monotonic() - started)
    return timings


def test_alias_moves_reach_every_replica_within_2s_with_and_without_a_training(
    stack: Stack,
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    insert_rows(fixture_corpus[FIRST_ROWS])
    stack.start_worker()
    versions = [stack.train()["model_version"], stack.train()["model_version"]]
    idle = time_moves(stack, versions, 20)
    insert_rows(
        [(f"{text} variant {i}", label) for i in range(40) for text, label in fixture_corpus]
    )
    job = stack.api.post("/api/train/").json()
    wait_until(
        lambda: stack.api.get(f"/api/train/{job['job_id']}/").json()["status"] == "running",
        timeout=30,
        what="the long training running",
    )
    busy = time_moves(stack, versions, 20)
    assert stack.api.get(f"/api/train/{job['job_id']}/").json()["status"] == "running"
    with capsys.disabled():
        for name, timings in (("idle", idle), ("training", busy)):
            median, slowest = statistics.median(timings) * 1000, max(timings) * 1000
            print(
                f"\nalias move -> every replica serving, {name}: median {median:.0f} ms, "
                f"max {slowest:.0f} ms over {len(timings)} moves"
            )
    assert max(idle) < 2.0 and max(busy) < 2.0, (idle, busy)
