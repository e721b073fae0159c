"""PostgreSQL and Redis restart under predict load: users see no failed prediction.

One stack for the module, on a PostgreSQL and a Redis of its own (restarted here, so nobody else
may use them): web (one process) and the algorithm service (two replicas), a champion in the
registry. While clients predict through web, PostgreSQL is stopped and started again, then Redis
(with its data, and empty), with an alias moved while Redis is down.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from core import serving_protocol
from core.harness.restartable import RestartablePostgres, RestartableRedis
from core.harness.scratch import make_scratch_dir
from loadtests.web_commands import run_web_command
from tests.algorithm.registry_helpers import fit_quickly, publish
from tests.helpers import ServiceStarter, assert_error, bearer, wait_until
from web.auth.tokens import digest_of, new_secret

pytestmark = pytest.mark.slow
REPLICAS = 2
TOKEN_CACHE_SECONDS = 2  # web's default AUTH_CACHE_SECONDS: an outage must outlast it
SERVED_WITHIN_SECONDS = 5
POOL_TIMEOUT_SECONDS = 1
RECOVERED_CALLS = 12  # calls in a row on new connections: every web process has answered


@dataclass
class Stack:
    postgres: RestartablePostgres
    redis: RestartableRedis
    web: httpx.Client  # as an admin
    versions: list[str]  # published; the first is the registry's champion at the start

    def reports(self) -> list[serving_protocol.ReplicaReport] | None:
        """What each replica reports serving (None while Redis does not answer)."""
        try:
            with redis.Redis.from_url(self.redis.url(), socket_timeout=1) as client:
                return serving_protocol.read_reports(client)
        except redis.RedisError:
            return None

    def wait_all_serve(self, version: str, *, timeout: float) -> float:
        """Wait until every replica reports `version`; the seconds it took."""
        started = time.monotonic()

        def served() -> bool:
            found = self.reports()
            return (
                found is not None
                and len(found) == REPLICAS
                and all(report.version == version for report in found)
            )

        wait_until(served, timeout=timeout, interval=0.05, what=f"every replica on {version}")
        return time.monotonic() - started


@dataclass
class PredictLoad:
    """Clients predicting through web until stopped; every answer that is not 200 is kept."""

    url: str
    headers: dict[str, str]
    clients: int = 4
    answers: int = 0
    versions: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> PredictLoad:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._predict, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.wait_for_answers(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for_answers(self, count: int) -> None:
        target = self.answers + count
        what = f"{count} more predictions (failures: {self.failures[-3:]})"
        wait_until(lambda: self.answers >= target or self.failures, timeout=30, what=what)
        assert not self.failures, self.failures[-3:]

    def _predict(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/api/predict/", json={"text": "a python library"})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                self.answers += 1
                self.versions.add(answer.json()["model_version"])


def _migrate(database_url: str) -> None:
    run_web_command({**os.environ, "DATABASE_URL": database_url}, "migrate", "--no-input")


def _register(database_url: str, versions: list[str]) -> str:
    """Record the versions and an admin token in the registry; `versions[0]` is champion."""
    secret = new_secret()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO api_token (name, role, digest, prefix, created_at) "
            "VALUES ('restarts-admin', 'admin', %s, %s, now())",
            (digest_of(secret), secret[:8]),
        )
        for version in versions:
            connection.execute(
                "INSERT INTO model_version (version, created_at, rows, labels, metrics, "
                "fingerprint, sha256, library_versions) VALUES (%s, now(), 450, '[]', "
                """'{"macro_f1": 0.8}', '{}', '{}', '{}')""",
                (version,),
            )
        connection.execute(
            "INSERT INTO model_alias (name, version_id) VALUES ('champion', %s)", (versions[0],)
        )
    return secret


@pytest.fixture(scope="module")
def stack(
    state_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    start_module_service: ServiceStarter,
) -> Iterator[Stack]:
    scratch = make_scratch_dir("restarts-", parent=state_dir)
    postgres = RestartablePostgres(
        scratch / "postgres", database="textclf", log_path=scratch / "postgres.log"
    )
    own_redis = RestartableRedis(scratch / "redis", log_path=scratch / "redis.log")
    started = time.monotonic()
    try:
        # Servers are started from this thread: they die with the thread that started them.
        postgres.start()
        own_redis.start()
        with ThreadPoolExecutor(max_workers=1) as background:  # migrated meanwhile
            migrated = background.submit(_migrate, postgres.url)
            model_dir = scratch / "models"
            model_dir.mkdir()
            model = fit_quickly(fixture_corpus, slice(0, None, 6))  # only its version matters
            # Two versions of one model; `current` names the second, the registry the first.
            versions = [publish(model_dir, model), publish(model_dir, model)]
            redis_url = own_redis.url()
            # Side by side with web below (seconds of imports each): web needs only its address.
            algorithm = start_module_service.launch(
                "algorithm",
                REDIS_URL=redis_url,
                MODEL_DIR=str(model_dir),
                ALGORITHM_WORKERS=str(REPLICAS),
            )
            migrated.result()
        secret = _register(postgres.url, versions)
        # Every scope limited, so the shared limiter (fail-open) is on every request's path.
        limits = {f"RATE_LIMIT_{scope}_PER_MINUTE": "600000" for scope in ("PREDICT", "READS")}
        web_url = start_module_service(
            "web",
            DATABASE_URL=postgres.url,
            REDIS_URL=redis_url,
            ALGORITHM_URL=algorithm.url,
            # While PostgreSQL is down, a data call waits this long for a connection before
            # its 503 (default 5 s): the test makes three such calls.
            WEB_DB_POOL_TIMEOUT_SECONDS=str(POOL_TIMEOUT_SECONDS),
            **limits,
        )
        algorithm.wait()
        print(f"stack up in {time.monotonic() - started:.1f} s")
        with httpx.Client(base_url=web_url, headers=bearer(secret), timeout=10) as web:
            yield Stack(postgres=postgres, redis=own_redis, web=web, versions=versions)
    finally:
        start_module_service.stop()
        postgres.stop()
        own_redis.stop()


def admin_login_attempt(web_url: str) -> httpx.Response:
    """A person's login on the admin's page: the form (and its CSRF token), then the POST."""
    with httpx.Client(base_url=web_url, timeout=10) as browser:
        page = browser.get("/admin/login/")
        assert page.status_code == 200, page.text  # the form needs no database
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found, page.text
        form = {"csrfmiddlewaretoken": found[1], "username": "ops", "password": "not-this-one"}
        return browser.post("/admin/login/?next=/admin/", data=form)


def test_predict_answers_through_a_postgres_restart_and_data_calls_answer_503(
    stack: Stack,
) -> None:
    # The reconciler tells the empty Redis what the registry says: the first version.
    stack.wait_all_serve(stack.versions[0], timeout=30)
    with PredictLoad(stack.web.base_url.__str__(), dict(stack.web.headers)) as load:
        stack.postgres.stop()
        stopped = time.monotonic()
        for path in ("/api/data/", "/api/models/versions/"):
            refused = stack.web.get(path)
            assert_error(refused, 503, "database_unavailable")
            assert int(refused.headers["Retry-After"]) > 0
        # Django's own views too: the admin's login looks its user up in PostgreSQL.
        login = admin_login_attempt(str(stack.web.base_url))
        assert_error(login, 503, "database_unavailable")
        assert int(login.headers["Retry-After"]) > 0
        # Past the token cache's lifetime: predict now runs on the outage's grace.
        time.sleep(max(0.0, stopped + TOKEN_CACHE_SECONDS + 0.5 - time.monotonic()))
        load.wait_for_answers(20)
        assert_error(stack.web.get("/api/data/"), 503, "database_unavailable")

        stack.postgres.start()
        # Each web process's pool reconnects on its own schedule: an attempt begun during the
        # outage waits out its backoff (up to about 2 s) before it tries again. Within the
        # bound, every process answers: calls in a row, each on a new connection (one
        # keep-alive connection would stay with one process), all succeed.
        answers: list[int] = []

        def every_process_answers() -> bool:
            path = "/api/data/" if len(answers) % 2 else "/api/models/versions/"
            answers.append(
                httpx.get(stack.web.base_url.join(path), headers=stack.web.headers).status_code
            )
            return answers[-RECOVERED_CALLS:] == [200] * RECOVERED_CALLS

        wait_until(every_process_answers, timeout=10, interval=0.05, what="every process answers")
        load.wait_for_answers(20)
    assert load.failures == []


def test_the_registry_champion_is_served_within_seconds_of_redis_coming_back(
    stack: Stack,
) -> None:
    first, second = stack.versions
    stack.wait_all_serve(first, timeout=30)
    with PredictLoad(stack.web.base_url.__str__(), dict(stack.web.headers)) as load:
        stack.redis.stop()
        moved = stack.web.put(
            "/api/models/aliases/champion/", json={"version": second, "reason": "Redis is down"}
        )
        assert moved.status_code == 200, moved.text
        load.wait_for_answers(20)  # predict does not need Redis

        stack.redis.start()  # with its data: it still announces the old champion
        assert stack.wait_all_serve(second, timeout=SERVED_WITHIN_SECONDS) < SERVED_WITHIN_SECONDS

        stack.redis.stop()
        stack.redis.start(empty=True)  # nothing announced at all
        assert stack.wait_all_serve(second, timeout=SERVED_WITHIN_SECONDS) < SERVED_WITHIN_SECONDS
        # The processes already served `second`, so that wait may end at once: web's
        # reconciler re-announces the registry's champion to the empty Redis on its next look.
        with redis.Redis.from_url(stack.redis.url(), socket_timeout=1) as client:
            wait_until(
                lambda: getattr(serving_protocol.read_desired(client), "champion", None) == second,
                timeout=SERVED_WITHIN_SECONDS,
                what="the registry's champion announced again",
            )
        load.wait_for_answers(20)
    assert load.failures == []
    assert second in load.versions
