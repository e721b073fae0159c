"""How `make bench` starts each server under test: own free port on 127.0.0.1, own log file.

Every server is a child from `stack.process.spawn` (own process group, dies with the bench) and
is stopped by its pid with `stop_children`. A server counts as up once the measured request
itself answers 2xx, so a scenario never measures start-up.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stack.embedded import free_port
from stack.process import Child, spawn, stop_children

HOST = "127.0.0.1"
WORKERS = 2
START_TIMEOUT_SECONDS = 90.0


@dataclass
class BenchEnv:
    """Where the bench keeps its state, and how to reach the shared servers."""

    work_dir: Path
    model_root: Path
    redis_url: str
    secret_key: str
    database_url: str = ""
    _log_count: int = field(default=0, repr=False)

    def log_path(self, name: str) -> Path:
        self._log_count += 1
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{self._log_count:03d}-{name}.log"

    def service_env(self) -> dict[str, str]:
        """The environment of every service: nothing inherited that could point elsewhere."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
        env = {name: value for name, value in os.environ.items() if name in keep}
        env.update(
            VAR_DIR=str(self.work_dir / "var"),
            MODEL_DIR=str(self.model_root),
            REDIS_URL=self.redis_url,
            DJANGO_SECRET_KEY=self.secret_key,
            PYTHONUNBUFFERED="1",
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env


@dataclass
class Server:
    """Running children (started in order) and the URL that is measured."""

    children: list[Child]
    url: str

    def stop(self) -> None:
        stop_children(self.children, timeout=15)


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_answers(url: str, body: bytes, *, child: Child, log: Path) -> None:
    """POST `body` to `url` until it answers 2xx; fail early if the child exits."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.running():
            raise RuntimeError(
                f"{child.name} exited with code {child.popen.returncode}:\n{tail(log)}"
            )
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if 200 <= response.status < 300:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{child.name} did not answer 2xx on {url} ({last}):\n{tail(log)}")


def _start(
    env: BenchEnv, name: str, argv: list[str], extra_env: dict[str, str], path: str, body: bytes
) -> tuple[Child, str]:
    log = env.log_path(name)
    child = spawn(name, argv, env={**env.service_env(), **extra_env}, log_path=log)
    port = extra_env["BENCH_PORT"]
    url = f"http://{HOST}:{port}{path}"
    try:
        wait_until_answers(url, body, child=child, log=log)
    except BaseException:
        stop_children([child])
        raise
    return child, url


def _pool_argv(app_path: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stack.serve",
        app_path,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
    ]


def start_algorithm(env: BenchEnv, body: bytes) -> Server:
    """(a) `python -m algorithm`, 2 workers, the published model."""
    port = free_port(HOST)
    extra = {
        "ALGORITHM_HOST": HOST,
        "ALGORITHM_PORT": str(port),
        "ALGORITHM_WORKERS": str(WORKERS),
        "BENCH_PORT": str(port),
    }
    child, url = _start(
        env, "algorithm", [sys.executable, "-m", "algorithm"], extra, "/predict", body
    )
    return Server([child], url)


def start_hello(env: BenchEnv, body: bytes) -> Server:
    """(b) the Flask hello ceiling on the same pool configuration."""
    port = free_port(HOST)
    argv = _pool_argv("loadtests.servers.flask_hello:app", port)
    child, url = _start(env, "flask-hello", argv, {"BENCH_PORT": str(port)}, "/predict", body)
    return Server([child], url)


def start_baseline(env: BenchEnv, body: bytes) -> Server:
    """(c) baseline B: sync Flask view, cached model, gunicorn with 2 sync workers."""
    port = free_port(HOST)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
        "--no-control-socket",
        "--bind",
        f"{HOST}:{port}",
        "loadtests.servers.gunicorn_baseline:app",
    ]
    child, url = _start(env, "gunicorn-baseline", argv, {"BENCH_PORT": str(port)}, "/predict", body)
    return Server([child], url)


def start_web_ceiling(env: BenchEnv, body: bytes) -> Server:
    """(e) web's ceiling: a constant Django async view with web's settings and pool."""
    port = free_port(HOST)
    argv = _pool_argv("loadtests.servers.django_ceiling:application", port)
    child, url = _start(
        env, "django-ceiling", argv, {"BENCH_PORT": str(port)}, "/api/predict/", body
    )
    return Server([child], url)


def start_web(env: BenchEnv, body: bytes) -> Server:
    """(d) `python -m web` in front of a running algorithm service (a)."""
    algorithm = start_algorithm(env, body)
    try:
        port = free_port(HOST)
        base = algorithm.url.removesuffix("/predict")
        extra = {
            "WEB_HOST": HOST,
            "WEB_PORT": str(port),
            "WEB_WORKERS": str(WORKERS),
            "ALGORITHM_URL": base,
            "BENCH_PORT": str(port),
        }
        child, url = _start(env, "web", [sys.executable, "-m", "web"], extra, "/api/predict/", body)
    except BaseException:
        algorithm.stop()
        raise
    return Server([*algorithm.children, child], url)


StartServer = Callable[[BenchEnv, bytes], Server]
