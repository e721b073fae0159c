"""Staging: the compose stack builds, serves a user's flow through web, and keeps its data.

Builds the image, brings the stack up under its own project name on free loopback ports with
generated secrets, runs a user's flow through web only, restarts `db` and `algorithm`, runs
`down` then `up`, checks rows and model after each, and ends with `down -v`. It takes minutes, so
`make test` deselects it; `make compose-test` starts a Docker engine if none answers and runs it.
Without an engine it is skipped. Environment: COMPOSE (the client, default `docker compose` or
`docker-compose`), COMPOSE_TEST_KEEP=1 (leave the stack running), COMPOSE_TEST_NO_CACHE=1.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.harness.scratch import free_port
from tests.helpers import wait_until

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]  # a cold build takes minutes
ROOT = Path(__file__).resolve().parents[2]
PROJECT = "textclf_compose_test"
IMAGE_TAG = "compose-test"
LONG_RUNNING = ("db", "redis", "web", "algorithm", "algorithm_celery")
TOPICS = {
    "sport": "football match goal team players scored league season coach stadium",
    "finance": "stock market shares investors bank interest rates earnings profit bonds",
    "cooking": "recipe oven flour butter sugar bake minutes sauce garlic onion",
}


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def compose_client() -> list[str]:
    if os.environ.get("COMPOSE"):
        return shlex.split(os.environ["COMPOSE"])
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("a Docker engine answers but neither `docker compose` nor `docker-compose` exists")


class Stack:
    """One compose project: its commands, and each service's state as Docker reports it."""

    def __init__(self, settings: dict[str, str], env_file: Path) -> None:
        self.command = [*compose_client(), "-p", PROJECT, "--env-file", str(env_file)]
        self.command += ["-f", str(ROOT / "compose.yml")]
        self.env = {**os.environ, **settings}  # over any of these in the developer's shell

    def run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.command, *args], cwd=ROOT, env=self.env, check=check)

    def states(self) -> dict[str, list[dict[str, Any]]]:
        """Container states per service, from compose's labels (the same for v1 and v2)."""
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}")
        states: dict[str, list[dict[str, Any]]] = {}
        for info in json.loads(docker("inspect", *ids.split())) if ids.strip() else []:
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            states.setdefault(service, []).append(info["State"])
        return states

    def ready(self) -> bool:
        """Every long-running service healthy and `migrate` exited 0 (fails if it did not)."""
        states = self.states()
        migrations = states.get("migrate", [])
        assert not any(s["Status"] == "exited" and s["ExitCode"] for s in migrations), migrations
        healthy = [
            bool(ran) and all(s.get("Health", {}).get("Status") == "healthy" for s in ran)
            for ran in (states.get(name, []) for name in LONG_RUNNING)
        ]
        migrated = bool(migrations) and all(s["Status"] == "exited" for s in migrations)
        return all(healthy) and migrated

    def wait_ready(self) -> float:
        """Seconds until the stack is ready."""
        started = time.monotonic()
        wait_until(self.ready, timeout=300, interval=0.5, what="every service healthy")
        return time.monotonic() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, httpx.Client]]:
    """A fresh stack project (not yet built) and a client of its web service."""
    if (
        not shutil.which("docker")
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        pytest.skip("no Docker engine answers (`make compose-test` starts one)")
    web_port = free_port()
    service_token = secrets.token_urlsafe(32)
    settings = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ADMIN_TOKEN": "tcf_" + secrets.token_urlsafe(32),
        "ALGORITHM_TOKEN": service_token,
        "ALGORITHM_TOKENS": service_token,
        "MODEL_SIGNING_KEY": secrets.token_urlsafe(32),
        "WEB_PUBLISH": f"127.0.0.1:{web_port}",
        "ALGORITHM_PUBLISH": f"127.0.0.1:{free_port()}",
        "TEXTCLF_TAG": IMAGE_TAG,
    }
    # Its own env file keeps a developer's .env out of the test.
    env_file = tmp_path_factory.mktemp("compose") / "compose-test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    stack = Stack(settings, env_file)
    stack.run("down", "-v", "--remove-orphans")
    auth = {"Authorization": f"Bearer {settings['ADMIN_TOKEN']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", headers=auth, timeout=30) as client:
        try:
            yield stack, client
        finally:
            if os.environ.get("COMPOSE_TEST_KEEP"):
                print(f"left running; stop it with: {shlex.join(stack.command)} down -v")
            else:
                stack.run("down", "-v", "--remove-orphans", check=False)


def training_rows(per_label: int = 200) -> list[dict[str, str]]:
    """Rows of three topics whose words do not overlap: any working model tells them apart."""
    rows = []
    for label, vocabulary in TOPICS.items():
        words = vocabulary.split()
        for i in range(per_label):
            picked = [words[(i * 7 + k * 3) % len(words)] for k in range(6)]
            rows.append({"text": f"{' '.join(picked)} item {i}", "label": label})
    return rows


def answer(call: Callable[[], httpx.Response]) -> dict[str, Any] | None:
    """The JSON of a 200 answer, or None while the service is not there (yet)."""
    try:
        response = call()
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def train(client: httpx.Client, rows: list[dict[str, str]]) -> str:
    """Bulk create, train, poll the job until it succeeds; return the model version."""
    created = client.post("/api/data/", json=rows)
    assert created.status_code == 201, created.text[:300]
    started = client.post("/api/train/")
    assert started.status_code == 202, started.text[:300]
    assert started.headers["Location"].endswith(f"/api/train/{started.json()['job_id']}/")

    def finished() -> dict[str, Any] | None:
        job = client.get(started.headers["Location"]).raise_for_status().json()
        assert job["status"] != "failed", job["error"]
        return dict(job) if job["status"] == "succeeded" else None

    return str(wait_until(finished, timeout=180, interval=0.5, what="training")["model_version"])


def assert_kept(client: httpx.Client, *, rows: int, version: str) -> None:
    """The rows and the model a user had before are still there, and still answer."""
    listing = wait_until(
        lambda: answer(lambda: client.get("/api/data/", params={"page_size": 1})),
        timeout=60,
        what="the row list answering",
    )
    assert listing["count"] == rows
    predicted = wait_until(
        lambda: answer(lambda: client.post("/api/predict/", json={"text": "stock market shares"})),
        timeout=60,
        what="predictions answering",
    )
    assert (predicted["label"], predicted["model_version"]) == ("finance", version)


def test_stack_serves_a_user_and_keeps_data_and_model_across_restarts(
    stack: tuple[Stack, httpx.Client],
) -> None:
    compose, client = stack
    timings: dict[str, float] = {}
    started = time.monotonic()
    # compose 1.29 builds every service that declares the build; one cache-less build is enough,
    # the others reuse its fresh layers.
    no_cache = ["--no-cache", "migrate"] if os.environ.get("COMPOSE_TEST_NO_CACHE") else []
    compose.run("build", *no_cache)
    timings["build (s)"] = time.monotonic() - started
    compose.run("up", "-d", "--build")
    timings["first up to ready, empty volumes (s)"] = compose.wait_ready()
    rows = training_rows()
    version = train(client, rows)
    # The algorithm service picks the new version up within its poll interval.
    sport = wait_until(
        lambda: answer(lambda: client.post("/api/predict/", json={"text": "goal by the team"})),
        timeout=30,
        what="a prediction",
    )
    assert (sport["label"], sport["model_version"]) == ("sport", version)
    batch = client.post("/api/predict/", json={"texts": ["bake the bread", "bank shares fell"]})
    assert batch.json()["labels"] == ["cooking", "finance"]
    timings["up --build to first prediction (s)"] = time.monotonic() - started

    compose.run("restart", "db", "algorithm")
    compose.wait_ready()
    assert_kept(client, rows=len(rows), version=version)

    compose.run("down")
    compose.run("up", "-d")
    timings["up to ready, images built, volumes kept (s)"] = compose.wait_ready()
    assert_kept(client, rows=len(rows), version=version)

    for image in (f"textclf:{IMAGE_TAG}", "python:3.11-slim"):
        size = docker("image", "inspect", "-f", "{{.Size}}", image)
        timings[f"image {image} (MB)"] = int(size) / 1e6
    print("\ncompose staging timings")
    for name, value in timings.items():
        print(f"  {name:<48} {value:8.1f}")
