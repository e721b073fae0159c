"""`make compose-test`: build the compose stack, run a user's flow through web, check persistence.

Uses the Docker engine that answers, or starts one with the shared `docker-offline` script. Runs
under its own compose project name, on free loopback ports and with generated secrets, so it never
touches a staging stack on the same engine; it removes its containers and volumes at the end
(`down -v`). Prints the timings that docs/benchmarks.md records. Standard library and httpx only.

    python -m loadtests.compose_test [--keep] [--no-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCKER_OFFLINE = ROOT.parent / "shared" / "tools" / "docker-offline" / "docker-offline"
PROJECT = "textclf_compose_test"
IMAGE_TAG = "compose-test"
LONG_RUNNING = ("db", "redis", "web", "algorithm", "algorithm_celery")
ONE_SHOT = ("migrate",)
TOPICS = {
    "sport": "football match goal team players scored league season coach stadium",
    "finance": "stock market shares investors bank interest rates earnings profit bonds",
    "cooking": "recipe oven flour butter sugar bake minutes sauce garlic onion",
}


class StackError(RuntimeError):
    """The stack did not do what a user expects."""


def log(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """One compose project: the commands, the environment, and health as Docker reports it."""

    def __init__(self, env: dict[str, str], env_file: Path) -> None:
        self.env = env
        self.client = self._compose_command(env)
        self.compose = [*self.client, "-p", PROJECT, "--env-file", str(env_file)]
        self.compose += ["-f", str(ROOT / "compose.yml")]

    @staticmethod
    def _compose_command(env: dict[str, str]) -> list[str]:
        if os.environ.get("COMPOSE"):
            return shlex.split(os.environ["COMPOSE"])
        probe = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
        if shutil.which("docker-compose", path=env["PATH"]):
            return ["docker-compose"]
        raise StackError("neither `docker compose` nor `docker-compose` is installed")

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> str:
        result = subprocess.run(
            [*self.compose, *args], env=self.env, cwd=ROOT, capture_output=quiet, text=True
        )
        if check and result.returncode != 0:
            raise StackError(f"compose {' '.join(args)} failed ({result.returncode})")
        return result.stdout or ""

    def docker(self, *args: str) -> str:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def states(self) -> dict[str, list[dict[str, Any]]]:
        """Container state per service, from Docker's own labels (same for compose v1 and v2)."""
        ids = self.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
        ).split()
        states: dict[str, list[dict[str, Any]]] = {}
        for info in json.loads(self.docker("inspect", *ids)) if ids else []:
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            states.setdefault(service, []).append(info["State"])
        return states

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Wait until every service is healthy and migrate exited 0; return the seconds waited."""
        start = time.monotonic()
        while True:
            states, waiting = self.states(), []
            for service in LONG_RUNNING:
                health = [s.get("Health", {}).get("Status") for s in states.get(service, [])]
                if not health or any(h != "healthy" for h in health):
                    waiting.append(f"{service}={','.join(str(h) for h in health) or 'absent'}")
            for service in ONE_SHOT:
                runs = states.get(service, [])
                if any(s["Status"] == "exited" and s["ExitCode"] != 0 for s in runs):
                    raise StackError(f"{service} exited with an error")
                if not runs or any(s["Status"] != "exited" for s in runs):
                    waiting.append(f"{service}=running")
            if not waiting:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise StackError(f"not ready after {timeout:.0f}s: {' '.join(waiting)}")
            time.sleep(0.5)


def training_rows(per_label: int) -> list[dict[str, str]]:
    rows = []
    for label, vocabulary in TOPICS.items():
        words = vocabulary.split()
        for i in range(per_label):
            picked = [words[(i * 7 + k * 3) % len(words)] for k in range(6)]
            rows.append({"text": f"{' '.join(picked)} item {i}", "label": label})
    return rows


def eventually(what: str, call: Any, *, timeout: float = 60.0) -> tuple[Any, int]:
    """Retry call until it returns a truthy value; return it and the number of failed attempts."""
    deadline, failures, last = time.monotonic() + timeout, 0, ""
    while time.monotonic() < deadline:
        try:
            result = call()
            if result:
                return result, failures
            last = "not yet"
        except (httpx.HTTPError, StackError, KeyError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        failures += 1
        time.sleep(0.5)
    raise StackError(f"{what} did not succeed within {timeout:.0f}s (last: {last})")


def predict(client: httpx.Client, text: str) -> dict[str, Any]:
    response = client.post("/api/predict/", json={"text": text})
    response.raise_for_status()
    return dict(response.json())


def row_count(client: httpx.Client) -> int:
    response = client.get("/api/data/", params={"page_size": 1})
    response.raise_for_status()
    return int(response.json()["count"])


def train_and_predict(client: httpx.Client, rows: list[dict[str, str]]) -> str:
    """Bulk create, train, poll, predict: the user's flow. Returns the model version."""
    created = client.post("/api/data/", json=rows)
    if created.status_code != 201:
        raise StackError(f"bulk create answered {created.status_code}: {created.text[:300]}")
    started = client.post("/api/train/")
    if started.status_code != 202:
        raise StackError(f"train answered {started.status_code}: {started.text[:300]}")
    job_id = started.json()["job_id"]
    log(f"training job {job_id} queued, Location: {started.headers.get('location')}")

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/train/{job_id}/").raise_for_status().json()
        if job["status"] == "failed":
            raise StackError(f"training failed: {job['error']}")
        return dict(job) if job["status"] == "succeeded" else None

    job, _ = eventually("training", finished, timeout=180)
    version = str(job["model_version"])

    def served_by_new_version() -> dict[str, Any] | None:
        answer = predict(client, "goal scored by the team")
        return answer if answer["model_version"] == version else None

    # The algorithm service picks the new version up within its poll interval.
    answer, _ = eventually("prediction", served_by_new_version, timeout=30)
    if answer["label"] != "sport":
        raise StackError(f"expected label 'sport', got {answer}")
    batch = client.post("/api/predict/", json={"texts": ["bake the bread", "bank shares fell"]})
    if batch.raise_for_status().json()["labels"] != ["cooking", "finance"]:
        raise StackError(f"batch prediction was wrong: {batch.text}")
    return version


def check_survived(client: httpx.Client, *, rows: int, version: str, when: str) -> None:
    count, failed_counts = eventually("listing rows", lambda: row_count(client), timeout=60)
    if count != rows:
        raise StackError(f"{when}: {count} rows instead of {rows}")
    answer, failed_predictions = eventually(
        "prediction", lambda: predict(client, "stock market shares"), timeout=60
    )
    if answer["model_version"] != version or answer["label"] != "finance":
        raise StackError(f"{when}: model not kept, got {answer}")
    failures = failed_counts + failed_predictions
    log(f"{when}: {count} rows and model {version} kept ({failures} failed attempts first)")


def ensure_engine(env: dict[str, str]) -> None:
    try:
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            return
    except FileNotFoundError:
        pass  # no client yet: docker-offline installs one
    if not DOCKER_OFFLINE.exists():
        raise StackError("no Docker engine answers and the docker-offline script is missing")
    log(f"no Docker engine answers: starting one with {DOCKER_OFFLINE.name} setup")
    subprocess.run([str(DOCKER_OFFLINE), "setup"], check=True)
    env["PATH"] = f"/usr/bin:{env['PATH']}"  # its Debian client and docker-compose


def image_size_mb(stack: Stack, image: str) -> float:
    return int(stack.docker("image", "inspect", "-f", "{{.Size}}", image)) / 1e6


def run_checks(
    stack: Stack, client: httpx.Client, *, no_cache: bool, per_label: int
) -> dict[str, float]:
    """The staging checks in order; returns the timings."""
    timings: dict[str, float] = {}
    start = time.monotonic()
    # Every Python service declares the same build; compose 1.29 builds each of them, so a
    # cache-less build of one is enough: the others reuse its fresh layers.
    stack.run("build", *(["--no-cache", "migrate"] if no_cache else []))
    timings["build (s)"] = time.monotonic() - start
    up_start = time.monotonic()
    stack.run("up", "-d", "--build")
    stack.wait_ready()
    timings["first up to ready, empty volumes (s)"] = time.monotonic() - up_start
    rows = training_rows(per_label)
    version = train_and_predict(client, rows)
    timings["up --build to first prediction (s)"] = time.monotonic() - start
    log(f"first prediction from model {version}")

    stack.run("restart", "db", "algorithm")
    stack.wait_ready()
    check_survived(client, rows=len(rows), version=version, when="after restarting db+algo")

    stack.run("down")
    up_start = time.monotonic()
    stack.run("up", "-d")
    stack.wait_ready()
    timings["up to ready, images built, volumes kept (s)"] = time.monotonic() - up_start
    check_survived(client, rows=len(rows), version=version, when="after down and up")
    timings["image size (MB)"] = image_size_mb(stack, f"textclf:{IMAGE_TAG}")
    timings["base python:3.11-slim (MB)"] = image_size_mb(stack, "python:3.11-slim")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--no-cache", action="store_true", help="build the image from scratch")
    parser.add_argument("--rows-per-label", type=int, default=200)
    args = parser.parse_args(argv)

    env = dict(os.environ)
    ensure_engine(env)
    web_port, algorithm_port = free_port(), free_port()
    settings = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "WEB_PUBLISH": f"127.0.0.1:{web_port}",
        "ALGORITHM_PUBLISH": f"127.0.0.1:{algorithm_port}",
        "TEXTCLF_TAG": IMAGE_TAG,
    }
    env.update(settings)
    # Its own env file keeps a developer's .env out of the test (and lets --keep users reach it).
    env_file = ROOT / "var" / "compose-test.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    stack = Stack(env, env_file)
    log(f"{' '.join(stack.client)}: web on {web_port}, algorithm on {algorithm_port}")
    stack.run("down", "-v", "--remove-orphans", quiet=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30)
    try:
        timings = run_checks(stack, client, no_cache=args.no_cache, per_label=args.rows_per_label)
    except Exception:
        stack.run("ps", check=False)
        stack.run("logs", "--tail", "40", check=False)
        raise
    finally:
        client.close()
        if args.keep:
            log(f"left running; stop it with: {' '.join(stack.compose)} down -v")
        else:
            stack.run("down", "-v", "--remove-orphans", check=False, quiet=True)
            env_file.unlink(missing_ok=True)
    print("\ncompose staging timings")
    for name, value in timings.items():
        print(f"  {name:<48} {value:8.1f}")
    print("compose-test: passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StackError as exc:
        print(f"compose-test: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
