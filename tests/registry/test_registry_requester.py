"""Who asked for a training, and from which request, as the registry records it.

Every service runs for real: web checks the editor's token, the algorithm service keeps the
requester with the job, the Celery worker writes the run and the promotion's audit rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ServiceStarter, bearer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def web_url(
    start_service: ServiceStarter, test_database_url: str, redis_db_url: str, model_dir: Path
) -> str:
    """web and the algorithm service (side by side); the test starts the worker when it wants
    jobs to run."""
    algorithm = start_service.launch("algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir))
    web = start_service("web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm.url)
    algorithm.wait()
    return web


@pytest.fixture
def as_token(transactional_db: Any) -> Iterator[Callable[..., tuple[str, httpx.Client]]]:
    """`as_token(url, role)`: a committed token of that role named for this test, and a client."""
    from web.auth.roles import Role
    from web.auth.tokens import issue_token

    clients: list[httpx.Client] = []

    def make(url: str, role: Role) -> tuple[str, httpx.Client]:
        name = f"ci-{role.label}-{uuid.uuid4().hex[:8]}"
        secret = issue_token(name=name, role=role)[1]
        clients.append(httpx.Client(base_url=url, headers=bearer(secret), timeout=10))
        return name, clients[-1]

    yield make
    for client in clients:
        client.close()


def test_a_training_through_web_records_who_asked_and_the_request_id(
    web_url: str,
    as_token: Callable[..., tuple[str, httpx.Client]],
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
) -> None:
    from web.auth.roles import Role

    insert_rows(fixture_corpus)
    editor_name, editor = as_token(web_url, Role.EDITOR)
    _, admin = as_token(web_url, Role.ADMIN)

    started = editor.post("/api/train/", headers={"X-Request-ID": "train-from-ci-1"})
    assert started.status_code == 202, started.text
    # No worker yet, so the job is still queued: a second request joins it, and the run keeps
    # its first requester and request id.
    joined = admin.post("/api/train/", headers={"X-Request-ID": "joined-by-admin"})
    job_id = started.json()["job_id"]
    assert joined.json()["job_id"] == job_id
    start_worker()

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = editor.get(started.headers["Location"]).json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_until(finished, timeout=180, interval=0.2, what=f"job {job_id} finished")
    assert job["status"] == "succeeded" and job["promoted"] is True, job

    runs = {run["id"]: run for run in admin.get("/api/train/").json()["results"]}
    assert runs[job_id]["requested_by"] == f"token:{editor_name}"
    assert runs[job_id]["request_id"] == "train-from-ci-1"

    version = job["model_version"]
    audit = admin.get("/api/audit/", params={"actor": "worker"}).json()["results"]
    mine = {(event["action"], event["target"]): event for event in audit}
    promotion = mine[("alias.move", "alias:champion")]
    assert promotion["after"] == {"version": version}
    assert promotion["request_id"] == "train-from-ci-1"
    assert mine[("version.publish", f"version:{version}")]["request_id"] == "train-from-ci-1"
