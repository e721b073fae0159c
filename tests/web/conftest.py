from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from tests.helpers import bearer

if TYPE_CHECKING:
    from rest_framework.test import APIClient

REPO_ROOT = Path(__file__).resolve().parents[2]
AlgorithmHandler = Callable[[httpx.Request], httpx.Response]
LIVE_IMPORT_MAX_BYTES = 200 * 1024 * 1024

# Django is configured in the root conftest's pytest_configure, after this file is imported:
# anything that reads Django settings is imported inside the fixtures.


@pytest.fixture
def anonymous_api(db: Any) -> APIClient:
    """A DRF client that sends no token."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def make_rows(api: APIClient) -> Any:
    """Create rows through the API and return their JSON."""

    def make(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
        body = [{"text": text, "label": label} for text, label in pairs]
        response = api.post("/api/data/", body, format="json")
        assert response.status_code == 201, response.content
        return list(response.json())

    return make


@pytest.fixture
def asgi_db(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Committed rows for tests that drive the ASGI app in-process (`web.asgi.application`).

    Under ASGI each request's sync code runs in a thread of its own, so its connections are
    closed at the end of the request (CONN_MAX_AGE 0, as Django advises for ASGI) instead of
    being dropped open with the thread; the token check's own thread is closed afterwards.
    Either left open would keep the test database from being dropped.
    """
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    yield
    from web.auth.check import token_cache

    token_cache.close_connections()


@contextlib.asynccontextmanager
async def algorithm_played_by(algorithm: AlgorithmHandler) -> AsyncIterator[None]:
    """While inside, web's calls to the algorithm service are answered by `algorithm`."""
    from web.proxy import algorithm_client

    client = algorithm_client.AlgorithmClient(
        "http://algorithm.test",
        timeout=1,
        connect_retries=0,
        transport=httpx.MockTransport(algorithm),
    )
    algorithm_client.install(client)
    try:
        yield
    finally:
        await client.aclose()
        algorithm_client.install(None)


@dataclass(frozen=True)
class InProcessWeb:
    """`web.asgi.application` in this process, the algorithm service played at the network edge.

    Each `send` has `algorithm` play the service (`algorithm_played_by`) and talks to the ASGI
    app through httpx's ASGI transport; every request presents `headers` (a request's own
    headers win).
    """

    headers: dict[str, str]

    def send(
        self, algorithm: AlgorithmHandler, *requests: dict[str, Any], concurrently: bool = False
    ) -> list[httpx.Response]:
        """Send `requests` (httpx.request arguments), in turn or all at once; their answers."""
        return asyncio.run(self._send(algorithm, requests, concurrently))

    def ask(
        self, algorithm: AlgorithmHandler, method: str, path: str, **request: Any
    ) -> httpx.Response:
        """One request and its answer."""
        [response] = self.send(algorithm, {"method": method, "url": path, **request})
        return response

    async def _send(
        self, algorithm: AlgorithmHandler, requests: tuple[dict[str, Any], ...], concurrently: bool
    ) -> list[httpx.Response]:
        from web.asgi import application

        transport = httpx.ASGITransport(app=cast(Any, application))
        async with (
            algorithm_played_by(algorithm),
            httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1", headers=self.headers
            ) as web,
        ):
            if concurrently:
                return list(await asyncio.gather(*(web.request(**r) for r in requests)))
            return [await web.request(**request) for request in requests]


@pytest.fixture(scope="module")
def module_tokens(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, str]]:
    """A token secret per role, committed for a whole module of in-process tests; flushed after.

    For modules whose tests only need the tokens and whose answers do not depend on what other
    tests wrote: flushing the database after every test (`transactional_db`) would cost more
    than most of those tests. The connection handling is `asgi_db`'s.
    """
    from django.core.management import call_command
    from django.db import connections

    from web.auth.check import token_cache
    from web.auth.roles import Role
    from web.auth.tokens import issue_token

    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch:
        patch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
        suffix = uuid.uuid4().hex[:8]
        yield {
            role.label: issue_token(name=f"module-{role.label}-{suffix}", role=role)[1]
            for role in Role
        }
        token_cache.close_connections()
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def web_as(module_tokens: dict[str, str]) -> Callable[[str | None], InProcessWeb]:
    """`web_as("reader")`: the in-process web app presenting that role's token (None: none)."""
    return lambda role: InProcessWeb(bearer(module_tokens[role]) if role else {})


@dataclass
class LiveWeb:
    """A real `python -m web` (one Hypercorn worker) on the test database."""

    url: str
    child: Any
    log: Path

    def worker_pids(self) -> list[int]:
        """The pids of the processes that serve requests (the pool's children)."""
        path = Path(f"/proc/{self.child.pid}/task/{self.child.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


@contextlib.contextmanager
def running_web(database_url: str, log_dir: Path) -> Iterator[LiveWeb]:
    """`python -m web` as `make run` starts it (one worker), live until the block ends."""
    from core.harness.scratch import free_port
    from core.process import spawn, stop_children
    from tests.helpers import wait_live

    port = free_port()
    log = log_dir / "web.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEB_PORT": str(port),
        "WEB_WORKERS": "1",
        "IMPORT_MAX_BYTES": str(LIVE_IMPORT_MAX_BYTES),
    }
    child = spawn("web", [sys.executable, "-m", "web"], env=env, cwd=REPO_ROOT, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_live(url, child, log)
        yield LiveWeb(url=url, child=child, log=log)
    finally:
        stop_children([child])


@pytest.fixture(scope="session")
def live_web(test_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWeb]:
    """The web service as `make run` starts it; tests that write use `transactional_db`.

    One for the session: four modules use it, and pytest-django runs each module's committing
    tests after the others, so a module's web was started again for them (five starts, seconds
    of imports each). Its state is the test database, emptied after each committing test.
    Set up after the test database, so it stops before the database is dropped.
    """
    with running_web(test_database_url, tmp_path_factory.mktemp("live-web")) as web:
        yield web


@pytest.fixture
def own_live_web(
    transactional_db: Any, test_database_url: str, tmp_path: Path
) -> Iterator[LiveWeb]:
    """A web of this test's own, for a test whose import leaves the web indexing a large
    backlog after it: stopped at the test's end, before the database is emptied (the session's
    would go on indexing under the flush and later tests)."""
    with running_web(test_database_url, tmp_path) as web:
        yield web
