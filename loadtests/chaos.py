"""The chaos run: PostgreSQL, then Redis, then the Celery worker go down under 64 predict clients.

Starts a whole stack on 127.0.0.1 (scratch PostgreSQL and Redis that only this run uses, web and
the algorithm service with two processes each, a Celery worker), trains two versions through web,
then, while `--clients` clients predict through web without pause:
1. postgres: PostgreSQL stops for `--outage` seconds (longer than the token cache) and starts
   again; a data call is made during the outage.
2. redis: Redis stops, the champion is rolled back meanwhile (answered 200, not announced), and
   Redis starts again empty (no announcement, no queue, no reports).
3. worker: a training is requested and its worker is SIGKILLed as the job starts publishing; a
   new worker takes the redelivered job (after the broker's visibility timeout).
Each phase reports its predictions, their 5xx (and connection errors), and the seconds from the
dependency's return (the kill, for the worker; and again from the redelivered job's end) until
every replica reports serving the registry's champion. Bounded: every wait has a deadline;
everything started is stopped.

    python -m loadtests.chaos [--clients 64] [--rows 4000] [--outage 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport
from redis import Redis

from core.harness.restartable import RestartablePostgres, RestartableRedis
from core.harness.run import wait_until_answers
from core.harness.scratch import celery_worker_command, free_port, make_scratch_dir
from core.jobs import JobStore
from core.process import Child, spawn, stop_children
from loadtests import bench_data
from loadtests.train_bench import load_rows
from loadtests.web_commands import prepare_web_database

REPLICAS = 2
# Short task limits, so a killed job is redelivered within the run (the visibility timeout).
WORKER_LIMITS = {
    "TASK_SOFT_TIME_LIMIT": "100",
    "TASK_TIME_LIMIT": "110",
    "BROKER_VISIBILITY_TIMEOUT": "120",
    "TRAINING_LOCK_TTL": "3",
    "BROKER_RESTORE_INTERVAL": "1",
}


@dataclass
class Load:
    """Clients predicting through web in a thread of their own; every answer's time and status."""

    url: str
    headers: dict[str, str]
    clients: int
    answers: list[tuple[float, int]] = field(default_factory=list)  # status 0: no answer
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def count(self, since: float, until: float) -> dict[str, int]:
        window = [status for at, status in self.answers if since <= at < until]
        errors = sum(1 for status in window if status == 0)
        return {
            "requests": len(window),
            "5xx": sum(1 for s in window if s >= 500),
            "connection_errors": errors,
            "other_non_200": sum(1 for s in window if s not in (0, 200) and s < 500),
        }

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        transport = AiohttpTransport(limits=limits, trust_env=False)
        async with httpx.AsyncClient(transport=transport, timeout=10, trust_env=False) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        body = {"text": "a python library for parsing and writing configuration files"}
        while not self._stop.is_set():
            try:
                status = (await client.post(self.url, json=body, headers=self.headers)).status_code
            except httpx.HTTPError:
                status = 0
            self.answers.append((time.monotonic(), status))


@dataclass
class Stack:
    web: httpx.Client  # an admin's
    worker_env: dict[str, str]
    scratch: Path
    children: list[Child]
    worker: Child | None = None

    def start_worker(self) -> None:
        log = self.scratch / f"worker-{len(self.children)}.log"
        name = f"chaos{len(self.children)}"
        self.worker = spawn(name, celery_worker_command(name), env=self.worker_env, log_path=log)
        self.children.append(self.worker)

    def champion_served(self) -> bool:
        """The registry names a champion and every replica reports serving it."""
        try:
            overview = self.web.get("/api/models/aliases/").json()
        except (httpx.HTTPError, ValueError):
            return False
        replicas = overview.get("replicas") or []
        champion = (overview.get("aliases") or {}).get("champion", {}).get("version")
        return (
            champion is not None
            and len(replicas) == REPLICAS
            and all(replica["version"] == champion for replica in replicas)
        )

    def train(self, timeout: float = 300) -> dict[str, Any]:
        started = self.web.post("/api/train/")
        started.raise_for_status()
        return self.wait_job(started.headers["Location"], timeout=timeout)

    def wait_job(self, location: str, *, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.web.get(location)
            if answer.status_code == 200 and answer.json()["status"] in ("succeeded", "failed"):
                return dict(answer.json())
            time.sleep(0.2)
        raise TimeoutError(f"{location} did not finish within {timeout:.0f} s")


def wait_for(probe: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `probe` holds (None: not within `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if probe():
            return round(time.monotonic() - started, 2)
        time.sleep(interval)
    return None


def postgres_phase(stack: Stack, postgres: RestartablePostgres, outage: float) -> dict[str, Any]:
    postgres.stop()
    time.sleep(1)
    during = stack.web.get("/api/data/")
    time.sleep(max(0.0, outage - 1))
    postgres.start()
    return {
        "data_call_during_outage": f"{during.status_code} {during.json().get('error')} "
        f"Retry-After={during.headers.get('Retry-After')}",
        "data_calls_back_s": wait_for(
            lambda: stack.web.get("/api/data/").status_code == 200, timeout=60
        ),
        "served_s": wait_for(stack.champion_served, timeout=60),
    }


def redis_phase(stack: Stack, redis: RestartableRedis, outage: float) -> dict[str, Any]:
    redis.stop()
    rollback = stack.web.post(
        "/api/models/aliases/champion/rollback/", json={"reason": "chaos: Redis is down"}
    )
    time.sleep(outage)
    redis.start(empty=True)
    return {
        "rollback_while_down": rollback.status_code,
        "served_s": wait_for(stack.champion_served, timeout=60),
    }


def worker_phase(stack: Stack, redis: RestartableRedis) -> dict[str, Any]:
    started = stack.web.post("/api/train/")
    started.raise_for_status()
    job_id, location = started.json()["job_id"], started.headers["Location"]
    jobs = JobStore(Redis.from_url(redis.url(), decode_responses=True))

    def publishing_or_done() -> bool:
        job = jobs.get(job_id) or {}
        phase = (job.get("progress") or {}).get("phase")
        return phase == "publishing" or job.get("status") in ("succeeded", "failed")

    wait_for(publishing_or_done, timeout=300, interval=0.002)
    seen = jobs.get(job_id) or {}
    assert stack.worker is not None
    os.killpg(stack.worker.pid, signal.SIGKILL)
    killed = time.monotonic()
    served_after_kill = wait_for(stack.champion_served, timeout=60)
    stack.start_worker()
    job = stack.wait_job(location, timeout=300)
    finished = time.monotonic()
    served_after_job = wait_for(stack.champion_served, timeout=60)
    champion = stack.web.get("/api/models/aliases/").json()["aliases"]["champion"]["version"]
    jobs.client.close()
    return {
        "killed_at": f"{seen.get('status')}/{(seen.get('progress') or {}).get('phase')}",
        "job": job["status"],
        "job_error": job.get("error"),
        "job_version_is_champion": job.get("model_version") == champion,
        "job_finished_after_kill_s": round(finished - killed, 1),
        "served_s": served_after_kill,
        "served_after_job_s": served_after_job,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rows", type=int, default=4_000, help="rows each training reads")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds each server is down")
    args = parser.parse_args(argv)
    scratch = make_scratch_dir("textclf-chaos-")
    postgres = RestartablePostgres(scratch / "pg", database="chaos", log_path=scratch / "pg.log")
    redis = RestartableRedis(scratch / "redis", log_path=scratch / "redis.log")
    children: list[Child] = []
    load: Load | None = None
    try:
        postgres.start()
        redis.start()
        web_port, algorithm_port, token = free_port(), free_port(), secrets.token_urlsafe(32)
        env = {
            **os.environ,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url(),
            "VAR_DIR": str(scratch / "var"),
            "MODEL_DIR": str(scratch / "models"),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "ALGORITHM_TOKEN": token,
            "ALGORITHM_TOKENS": token,
            "ALGORITHM_URL": f"http://127.0.0.1:{algorithm_port}",
            "ALGORITHM_PORT": str(algorithm_port),
            "ALGORITHM_WORKERS": str(REPLICAS),
            "WEB_PORT": str(web_port),
            "WEB_WORKERS": "2",
            "ACCESS_LOG": "false",
            "WORKER_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
            **WORKER_LIMITS,
        }
        admin = secrets.token_urlsafe(32)
        prepare_web_database(env, token=admin, name="chaos", role="admin")
        load_rows(postgres.url, args.rows, bench_data.load_corpus())
        for package in ("algorithm", "web"):
            log = scratch / f"{package}.log"
            child = spawn(package, [sys.executable, "-m", package], env=env, log_path=log)
            children.append(child)
            port = env[f"{package.upper()}_PORT"]
            wait_until_answers(f"http://127.0.0.1:{port}/health/live", child=child, timeout=120)
        web_url = f"http://127.0.0.1:{web_port}"
        headers = {"Authorization": f"Bearer {admin}"}
        web = httpx.Client(base_url=web_url, headers=headers, timeout=30)
        stack = Stack(web=web, worker_env=env, scratch=scratch, children=children)
        stack.start_worker()
        for _ in range(2):  # two versions: champion and previous, for the rollback
            print("training:", stack.train()["status"], flush=True)
        if wait_for(stack.champion_served, timeout=60) is None:
            raise RuntimeError("the replicas never served the champion")

        load = Load(f"{web_url}/api/predict/", headers, args.clients)
        load.start()
        time.sleep(3)
        phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("postgres", lambda: postgres_phase(stack, postgres, args.outage)),
            ("redis", lambda: redis_phase(stack, redis, args.outage)),
            ("worker", lambda: worker_phase(stack, redis)),
        ]
        for name, phase in phases:
            began = time.monotonic()
            found = phase()
            time.sleep(2)  # the tail: answers right after the phase count in it
            print(json.dumps({"phase": name, **load.count(began, time.monotonic()), **found}))
            sys.stdout.flush()
        load.stop()
        print(json.dumps({"phase": "whole run", **load.count(0, time.monotonic())}))
        web.close()
    finally:
        if load is not None:
            load.stop()
        stop_children(children)
        postgres.stop()
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
