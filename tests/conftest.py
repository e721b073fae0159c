"""Real PostgreSQL and Redis for the whole test session.

Started the way `make run` starts them (embedded, free ports, a temporary directory, generated
passwords kept in owner-only files under VAR_DIR) unless DATABASE_URL / REDIS_URL name servers
to use. They are started in `pytest_configure`, before
Django reads its settings, and stopped when the session ends.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

# None of these reads settings or Django's when imported: importing them here, before
# `pytest_configure` sets the environment, is safe. Anything that does is imported inside the
# fixture that needs it.
from algorithm.service.training_queue import TrainingQueue
from core.harness.embedded import (
    kept_password,
    postgres_url,
    redis_url,
    start_postgres,
    start_redis,
)
from core.harness.scratch import free_port, make_scratch_dir
from core.jobs import JobStore
from core.process import Child, stop_children
from core.settings import EMBEDDED_PASSWORD_FILES
from tests.helpers import ServiceStarter, WorkerStarter, bearer, wait_until

if TYPE_CHECKING:
    from rest_framework.test import APIClient

    from algorithm.ml.training import TrainedModel

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CORPUS = REPO_ROOT / "tests" / "fixtures" / "debian_descriptions.jsonl"

_children: list[Child] = []
_state_dir: Path | None = None
_redis_databases = itertools.cycle(range(1, 16))  # database 0 stays the session default
AUDIT_TABLE = "audit_event"


def pytest_configure(config: pytest.Config) -> None:
    global _state_dir
    _state_dir = make_scratch_dir("textclf-tests-")
    logs = _state_dir / "logs"
    logs.mkdir()
    var_dir = _state_dir / "var"
    if not os.environ.get("DATABASE_URL"):
        port = free_port()
        password = kept_password(var_dir / EMBEDDED_PASSWORD_FILES["DATABASE_URL"])
        postgres = start_postgres(
            _state_dir / "postgres",
            port=port,
            database="textclf",
            password=password,
            log_path=logs / "postgres.log",
        )
        _children.append(postgres)
        os.environ["DATABASE_URL"] = postgres_url(port=port, database="textclf", password=password)
    if not os.environ.get("REDIS_URL"):
        port = free_port()
        password = kept_password(var_dir / EMBEDDED_PASSWORD_FILES["REDIS_URL"])
        redis_dir = _state_dir / "redis"
        _children.append(
            start_redis(redis_dir, port=port, password=password, log_path=logs / "redis.log")
        )
        os.environ["REDIS_URL"] = redis_url(port=port, password=password)
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 32)
    # Test workers run side by side: only tests that scrape a worker give it a metrics port.
    os.environ["WORKER_METRICS_PORT"] = "0"
    # Every service the tests start shares one service token (see the `service_token` fixture).
    os.environ.setdefault("ALGORITHM_TOKEN", secrets.token_urlsafe(32))
    os.environ.setdefault("ALGORITHM_TOKENS", os.environ["ALGORITHM_TOKEN"])
    # ...and one key that signs and verifies model manifests (tests.helpers.signing_keys).
    os.environ.setdefault("MODEL_SIGNING_KEY", secrets.token_urlsafe(32))
    # Rate limits are shared through Redis by every process of the session: a test turns on the
    # ones it checks (tests/web/test_rate_limits.py), so no other test is throttled by chance.
    for scope in ("PREDICT", "READS", "WRITES", "TRAIN", "ANONYMOUS", "REJECTED"):
        os.environ.setdefault(f"RATE_LIMIT_{scope}_PER_MINUTE", "0")
    for who in ("ADDRESS", "USERNAME"):
        os.environ.setdefault(f"ADMIN_LOGIN_FAILURES_PER_{who}", "0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    import django

    django.setup()  # now that the URLs are known; test modules import models at collection
    flush_past_the_audit_trail()


def flush_past_the_audit_trail() -> None:
    """Let the clean-up after each `transactional_db` test empty the audit trail.

    Django empties the test database with one TRUNCATE of every table, which the audit trail
    refuses (migration registry 0004). The clean-up, as the tables' owner, lifts that trigger
    for its own transaction only; every other session, and the tests, still meet it.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    sql_flush = DatabaseOperations.sql_flush

    def flush(self: DatabaseOperations, style: Any, tables: Any, **options: Any) -> list[str]:
        statements = list(sql_flush(self, style, tables, **options))
        if AUDIT_TABLE not in tables or not statements:
            return statements
        trigger = f"ALTER TABLE {AUDIT_TABLE} {{}} TRIGGER audit_event_no_truncate"
        return [trigger.format("DISABLE"), *statements, trigger.format("ENABLE")]

    DatabaseOperations.sql_flush = flush


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_children(_children)
    if _state_dir is not None:
        shutil.rmtree(_state_dir, ignore_errors=True)
    if os.geteuid() == 0:
        # PostgreSQL data a stack kept outside a private VAR_DIR of this session (test_make_run)
        # goes with it, also when the test failed before its own clean-up.
        from core.harness.postgres_user import sweep_orphans

        sweep_orphans()


@pytest.fixture(scope="session")
def service_token() -> str:
    """The token every algorithm service of the session accepts and every web sends."""
    return os.environ["ALGORITHM_TOKEN"]


@pytest.fixture(scope="session")
def service_headers(service_token: str) -> dict[str, str]:
    """Headers of a caller of the algorithm service (web, an operator, a test)."""
    return {"Authorization": f"Bearer {service_token}"}


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """The session's temporary directory (embedded server data, logs, VAR_DIR)."""
    assert _state_dir is not None
    return _state_dir


# ---------------------------------------------------------------------------------------------
# Shared process fixtures (worker section): the test database's URL, a Redis database of its
# own, a model directory, real Celery worker processes and the labelled fixture corpus.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, also when no test of the session is marked for it.

    pytest-django creates the test database only for the aliases its selected tests mark
    (`db`, `transactional_db`, `django_db`). Tests that reach the database only through module
    fixtures (`module_tokens`: whole modules of in-process predictions) then ran against the
    development database's name, without tables, whenever no marked test was selected with them
    (one such file run alone). Here the default alias gets its test database in that case too.
    """
    from django.db import connections
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX
    from django.test.utils import setup_databases, teardown_databases

    default = connections["default"]
    if default.settings_dict["NAME"].startswith(TEST_DATABASE_PREFIX):
        yield  # made by pytest-django
        return
    with django_db_blocker.unblock():
        default.close_pool()  # a pool keeps the name of the database it was made for
        databases = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(databases, verbosity=0)


@pytest.fixture(scope="session")
def test_database_url(django_db_setup: Any, django_db_blocker: Any) -> str:
    """DATABASE_URL of pytest-django's test database (migrated); give it to subprocesses."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + str(connection.settings_dict["NAME"])))


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[redis.Redis]:
    """One client of the session's Redis database 0 for the clean-up before every test (a new
    connection and its AUTH per test were most of that clean-up's few milliseconds)."""
    with redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2) as client:
        yield client


@pytest.fixture(autouse=True)
def _no_registry_state_left_in_the_session_redis(_session_redis: redis.Redis) -> None:
    """A champion announced by one test must not steer the algorithm apps of the next."""
    # 1 000 keys a step: SCAN's default of 10 took a round trip per ten keys of database 0.
    serving = _session_redis.scan_iter(b"textclf:serving:*", count=1000)
    _session_redis.delete(b"textclf:registry:desired", *serving)


def claim_redis_database() -> str:
    """The URL of the next of the session's Redis databases, flushed: jobs, markers, queues."""
    parts = urlsplit(os.environ["REDIS_URL"])
    url = urlunsplit(parts._replace(path=f"/{next(_redis_databases)}"))
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def redis_db_url() -> str:
    """A Redis database for this test alone (flushed first): jobs, markers, broker queues."""
    return claim_redis_database()


@pytest.fixture(scope="module")
def module_redis_url() -> str:
    """A Redis database for a service the module's tests share (see `start_module_service`)."""
    return claim_redis_database()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty model root for this test."""
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def fixture_corpus() -> list[tuple[str, str]]:
    """The committed sample of Debian package descriptions: 900 (text, label) rows, 6 labels."""
    with FIXTURE_CORPUS.open(encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in map(json.loads, handle)]


@pytest.fixture(scope="session")
def fixture_training(fixture_corpus: list[tuple[str, str]]) -> tuple[TrainedModel, dict[str, Any]]:
    """`train_model` on the whole fixture corpus, once for the session: the model and its metrics.

    Every module that serves or inspects a model of all 900 rows uses this one (a training is
    about two seconds of CPU); the model is only read, never changed.
    """
    from algorithm.ml.training import train_model

    return train_model([text for text, _ in fixture_corpus], [label for _, label in fixture_corpus])


@pytest.fixture(scope="session")
def fixture_model(fixture_training: tuple[TrainedModel, dict[str, Any]]) -> TrainedModel:
    """The model of `fixture_training`."""
    return fixture_training[0]


@pytest.fixture
def insert_rows(transactional_db: Any) -> Callable[[list[tuple[str, str]]], None]:
    """Insert (text, label) rows into `data`, committed, so other processes see them.

    Without web's statement timeout (5 s): tens of thousands of rows are a test's setup, not a
    request, and on a loaded machine their index updates can take longer.
    """
    from django.db import connection, transaction

    def insert(rows: list[tuple[str, str]]) -> None:
        with transaction.atomic(), connection.cursor() as cursor:  # one statement, any rows
            cursor.execute("SET LOCAL statement_timeout = 0")
            cursor.execute(
                "INSERT INTO data (text, label, created_at, updated_at) "
                "SELECT t, l, now(), now() FROM unnest(%s::text[], %s::text[]) AS u(t, l)",
                [[text for text, _ in rows], [label for _, label in rows]],
            )

    return insert


@pytest.fixture
def start_worker(
    test_database_url: str, redis_db_url: str, model_dir: Path, tmp_path: Path
) -> Iterator[WorkerStarter]:
    """Start real Celery workers on the test database, this test's Redis and model_dir.

    Keyword arguments are extra environment variables (e.g. TASK_TIME_LIMIT="20"). Rows must be
    committed to be seen (use `insert_rows` or the `transactional_db` fixture). Every worker is
    killed when the test ends.
    """
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url,
        "REDIS_URL": redis_db_url,
        "MODEL_DIR": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }
    starter = WorkerStarter(env, tmp_path)
    yield starter
    starter.kill_all()


@pytest.fixture
def job_store(redis_db_url: str) -> Iterator[JobStore]:
    """The job store on this test's Redis database."""
    client = redis.Redis.from_url(redis_db_url, decode_responses=True)
    yield JobStore(client)
    client.close()


@pytest.fixture
def request_training(
    redis_db_url: str, job_store: JobStore
) -> Iterator[Callable[[], dict[str, Any]]]:
    """Request a training the way the algorithm service does; return the job."""
    queue = TrainingQueue(redis_db_url)
    yield lambda: job_store.request_training(enqueue=queue.enqueue)
    queue.close()


@pytest.fixture
def wait_for_job(job_store: JobStore) -> Callable[..., dict[str, Any]]:
    """Poll a job until it succeeds or fails; return it (AssertionError on timeout)."""

    def wait(job_id: str, *, timeout: float = 60) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job = job_store.get(job_id)
            return job if job is not None and job["status"] in ("succeeded", "failed") else None

        return wait_until(finished, timeout=timeout, what=f"job {job_id} finished")

    return wait


@pytest.fixture
def tokens(db: Any) -> dict[str, str]:
    """A fresh token secret per role ("reader", "editor", "admin") in the test's database.

    Committed (so live servers see them) when the test also uses `transactional_db`.
    """
    from web.auth.roles import Role
    from web.auth.tokens import issue_token

    suffix = uuid.uuid4().hex[:8]
    return {
        role.label: issue_token(name=f"test-{role.label}-{suffix}", role=role)[1] for role in Role
    }


@pytest.fixture
def admin_headers(tokens: dict[str, str]) -> dict[str, str]:
    """Headers that authenticate as this test's admin token."""
    return bearer(tokens["admin"])


@pytest.fixture
def api(admin_headers: dict[str, str]) -> APIClient:
    """A DRF test client with an admin token, against the real database (rolled back after each
    test unless the test uses `transactional_db`)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=admin_headers["Authorization"])
    return client


@pytest.fixture
def web_client(
    transactional_db: Any, tokens: dict[str, str]
) -> Iterator[Callable[..., httpx.Client]]:
    """httpx clients for a live web service: `web_client(url, role="admin")` (None: no token).

    The tokens are committed, so the web process finds them; clients are closed after the test.
    """
    clients: list[httpx.Client] = []

    def make(url: str, role: str | None = "admin") -> httpx.Client:
        headers = bearer(tokens[role]) if role else {}
        client = httpx.Client(base_url=url, headers=headers, timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[ServiceStarter]:
    """Start `python -m web` or `python -m algorithm` on a free port; returns its base URL."""
    starter = ServiceStarter(tmp_path)
    yield starter
    starter.stop()


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStarter]:
    """`start_service` for services that a module's tests share without disturbing each other."""
    starter = ServiceStarter(tmp_path_factory.mktemp("services"))
    yield starter
    starter.stop()


@pytest.fixture(scope="session")
def start_session_service(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: Any
) -> Iterator[ServiceStarter]:
    """`start_service` for services that tests of several modules share without disturbing each
    other (a service start costs seconds of CPU: imports of Django or scikit-learn).

    Set up after the test database, so its services stop before the database is dropped.
    """
    starter = ServiceStarter(tmp_path_factory.mktemp("session-services"))
    yield starter
    starter.stop()


@pytest.fixture(scope="session")
def web_without_algorithm(start_session_service: ServiceStarter, test_database_url: str) -> str:
    """One web service for the session on the test database, its algorithm service down
    (nothing listens on port 9): for tests of what web answers by itself (pages, the registry,
    refusals, 503s); what a test commits (its tokens, users, versions) is flushed after it.

    The browser tests, the e2e refusals and the registry's concurrency test each started one
    like it (seconds of imports every time).
    """
    return start_session_service(
        "web", DATABASE_URL=test_database_url, ALGORITHM_URL="http://127.0.0.1:9"
    )
