"""Staging: the compose stack builds, serves a user's flow through web, and keeps its data.

Builds the image, brings the stack up under its own project name on free loopback ports with
generated secrets, runs a user's flow through web only, restarts `db` and `algorithm`, runs
`down` then `up`, checks rows and model after each, and ends with `down -v`. The scaled variant
(compose.s3.yml: models in the object store, `--scale algorithm=3`) shows the replicas sharing
predictions, replaced one at a time under load with no failed request, and keeping data and
models across `down`/`up`. It takes minutes, so `make test` deselects it; `make compose-test`
starts a Docker engine if none answers and runs it. Without an engine it is skipped.
Environment: COMPOSE (the client, default `docker compose` or `docker-compose`),
COMPOSE_TEST_KEEP=1 (leave the stacks running), COMPOSE_TEST_NO_CACHE=1,
COMPOSE_TEST_MODEL_STORE=volume (the scaled test on compose.yml's shared model volume instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(
        self,
        settings: dict[str, str],
        env_file: Path,
        *,
        project: str = PROJECT,
        files: tuple[str, ...] = ("compose.yml",),
        long_running: tuple[str, ...] = LONG_RUNNING,
        one_shot: tuple[str, ...] = ("migrate",),
    ) -> None:
        self.project, self.long_running, self.one_shot = project, long_running, one_shot
        self.command = [*compose_client(), "-p", project, "--env-file", str(env_file)]
        for file in files:
            self.command += ["-f", str(ROOT / file)]
        self.env = {**os.environ, **settings}  # over any of these in the developer's shell

    def run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.command, *args], cwd=ROOT, env=self.env, check=check)

    def states(self) -> dict[str, list[dict[str, Any]]]:
        """Container states per service, from compose's labels (the same for v1 and v2)."""
        ids = self.containers()
        states: dict[str, list[dict[str, Any]]] = {}
        for info in json.loads(docker("inspect", *ids)) if ids else []:
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            states.setdefault(service, []).append(info["State"])
        return states

    def containers(self, service: str | None = None) -> list[str]:
        """The ids of the project's containers (of one service), running or not."""
        labels = [f"label=com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"label=com.docker.compose.service={service}")
        filters = [arg for label in labels for arg in ("--filter", label)]
        return docker("ps", "-aq", *filters).split()

    def ready(self, replicas: dict[str, int] | None = None) -> bool:
        """Every long-running service healthy (with `replicas` containers where given) and each
        one-shot service exited 0 (fails if one did not)."""
        states = self.states()
        done = []
        for name in self.one_shot:
            ran = states.get(name, [])
            assert not any(s["Status"] == "exited" and s["ExitCode"] for s in ran), (name, ran)
            done.append(bool(ran) and all(s["Status"] == "exited" for s in ran))
        healthy = [
            bool(ran)
            and all(s.get("Health", {}).get("Status") == "healthy" for s in ran)
            and len(ran) == (replicas or {}).get(name, len(ran))
            for name, ran in ((name, states.get(name, [])) for name in self.long_running)
        ]
        return all(healthy) and all(done)

    def wait_ready(self, replicas: dict[str, int] | None = None) -> float:
        """Seconds until the stack is ready."""
        started = time.monotonic()
        wait_until(
            lambda: self.ready(replicas), timeout=300, interval=0.5, what="every service healthy"
        )
        return time.monotonic() - started


def generated_settings(web_port: int) -> dict[str, str]:
    """Fresh secrets and free ports: what a user puts in .env."""
    service_token = secrets.token_urlsafe(32)
    settings = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ADMIN_TOKEN": "tcf_" + secrets.token_urlsafe(32),
        "ALGORITHM_TOKEN": service_token,
        "ALGORITHM_TOKENS": service_token,
        "MODEL_SIGNING_KEY": secrets.token_urlsafe(32),
        "WEB_PUBLISH": f"127.0.0.1:{web_port}",
        "ALGORITHM_PUBLISH": f"127.0.0.1:{free_port()}",
        "TEXTCLF_TAG": IMAGE_TAG,
        "AWS_ACCESS_KEY_ID": "textclf" + secrets.token_hex(6),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }
    return settings


def require_engine() -> None:
    if (
        not shutil.which("docker")
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        pytest.skip("no Docker engine answers (`make compose-test` starts one)")


@contextlib.contextmanager
def running(stack: Stack, settings: dict[str, str]) -> Iterator[httpx.Client]:
    """A client of the stack's web service; the stack is taken down (volumes too) after."""
    stack.run("down", "-v", "--remove-orphans")
    auth = {"Authorization": f"Bearer {settings['ADMIN_TOKEN']}"}
    web = f"http://{settings['WEB_PUBLISH']}"
    with httpx.Client(base_url=web, headers=auth, timeout=30) as client:
        try:
            yield client
        finally:
            if os.environ.get("COMPOSE_TEST_KEEP"):
                print(f"left running; stop it with: {shlex.join(stack.command)} down -v")
            else:
                stack.run("down", "-v", "--remove-orphans", check=False)


def env_file_for(settings: dict[str, str], directory: Path) -> Path:
    """Its own env file keeps a developer's .env out of the test."""
    env_file = directory / "compose-test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return env_file


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, httpx.Client]]:
    """A fresh stack project (not yet built) and a client of its web service; taken down after
    its test, so two stacks never share the machine."""
    require_engine()
    settings = generated_settings(free_port())
    stack = Stack(settings, env_file_for(settings, tmp_path_factory.mktemp("compose")))
    with running(stack, settings) as client:
        yield stack, client


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
    # Redis asks every client for REDIS_PASSWORD (the services send it in REDIS_URL).
    redis_container = compose.containers("redis")[0]
    anonymous = ["exec", redis_container, "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping"]
    assert "NOAUTH" in docker(*anonymous)
    assert docker("exec", redis_container, "redis-cli", "ping").strip() == "PONG"

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


SCALED_PROJECT = "textclf_compose_scaled_test"
REPLICAS = 3


@pytest.fixture
def scaled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, httpx.Client]]:
    """The scaled variant: compose.s3.yml over compose.yml (or the shared model volume)."""
    require_engine()
    settings = generated_settings(free_port())
    in_store = os.environ.get("COMPOSE_TEST_MODEL_STORE", "s3") == "s3"
    stack = Stack(
        settings,
        env_file_for(settings, tmp_path_factory.mktemp("scaled")),
        project=SCALED_PROJECT,
        files=("compose.yml", "compose.s3.yml") if in_store else ("compose.yml",),
        long_running=LONG_RUNNING + (("objectstore",) if in_store else ()),
        one_shot=("migrate", "objectstore_bucket") if in_store else ("migrate",),
    )
    with running(stack, settings) as client:
        yield stack, client


def predictions_served(container: str) -> float:
    """The replica's own `textclf_predictions_total`, read from /metrics inside its container."""
    metrics = docker(
        "exec",
        container,
        "python",
        "-c",
        "import urllib.request as u; "
        "print(u.urlopen('http://127.0.0.1:8001/metrics', timeout=10).read().decode())",
    )
    for line in metrics.splitlines():
        if line.startswith("textclf_predictions_total "):
            return float(line.split()[1])
    return 0.0  # nothing predicted yet


def predict_through_web(
    client: httpx.Client,
    *,
    users: int,
    each: int | None = None,
    stop: threading.Event | None = None,
) -> tuple[Counter[str], list[str]]:
    """`users` concurrent users predicting through web (`each` times, or until `stop`): the
    model versions that answered, and every failure (a status other than 200, an error)."""
    versions: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30) as own:
            sent = 0
            while (each is None or sent < each) and not (stop is not None and stop.is_set()):
                sent += 1
                text = f"stock market shares {number} {sent}"
                try:
                    response = own.post("/api/predict/", json={"text": text})
                    failed = None if response.status_code == 200 else response.text[:200]
                except httpx.HTTPError as exc:
                    failed = repr(exc)
                with lock:
                    if failed is None:
                        versions[response.json()["model_version"]] += 1
                    else:
                        failures.append(failed)

    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    return versions, failures


def test_scaled_replicas_share_predictions_are_replaced_under_load_and_keep_models(
    scaled_stack: tuple[Stack, httpx.Client],
) -> None:
    compose, client = scaled_stack
    numbers: dict[str, Any] = {}
    compose.run("up", "-d", "--build", "--scale", f"algorithm={REPLICAS}")
    numbers["up --scale algorithm=3 to ready (s)"] = compose.wait_ready({"algorithm": REPLICAS})
    rows = training_rows()
    version = train(client, rows)  # succeeded: every live replica serves it

    # Three replicas share the predictions: each within 25 % of the mean.
    replicas = compose.containers("algorithm")
    before = {replica: predictions_served(replica) for replica in replicas}
    started = time.monotonic()
    versions, failures = predict_through_web(client, users=16, each=150)
    numbers["2 400 predictions, 16 users (s)"] = time.monotonic() - started
    served = {replica: predictions_served(replica) - before[replica] for replica in replicas}
    numbers["predict calls per replica"] = sorted(served.values())
    assert failures == [] and versions == {version: 2400}, (failures[:5], versions)
    mean = sum(served.values()) / REPLICAS
    assert all(abs(calls - mean) <= 0.25 * mean for calls in served.values()), served

    # Rolling replacement under load: stop (SIGTERM, drain), remove, start a new one, wait
    # until it is healthy, next. Not one request fails.
    stop = threading.Event()
    with ThreadPoolExecutor(1) as background:
        load = background.submit(predict_through_web, client, users=16, stop=stop)
        time.sleep(2)
        started = time.monotonic()
        for old in replicas:
            docker("stop", "-t", "20", old)
            docker("rm", "-v", old)
            compose.run(
                "up",
                "-d",
                "--no-deps",
                "--no-recreate",
                "--scale",
                f"algorithm={REPLICAS}",
                "algorithm",
            )
            compose.wait_ready({"algorithm": REPLICAS})
        numbers["rolling replacement of 3 replicas (s)"] = time.monotonic() - started
        time.sleep(2)
        stop.set()
        versions, failures = load.result()
    numbers["predictions during the replacement"] = sum(versions.values())
    numbers["failed during the replacement"] = len(failures)
    assert failures == [], failures[:5]
    assert set(versions) == {version}
    assert not set(compose.containers("algorithm")) & set(replicas)

    # Data and models survive down/up (in the object store: fresh replicas, empty caches).
    compose.run("down")
    compose.run("up", "-d", "--scale", f"algorithm={REPLICAS}")
    numbers["up to ready after down (s)"] = compose.wait_ready({"algorithm": REPLICAS})
    assert_kept(client, rows=len(rows), version=version)
    versions, failures = predict_through_web(client, users=4, each=30)
    assert failures == [] and versions == {version: 120}

    print("\ncompose scaled (algorithm=3) numbers")
    for name, value in numbers.items():
        print(f"  {name:<48} {value}")
