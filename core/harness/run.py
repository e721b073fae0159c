"""`make run`: the whole stack in the foreground, stopped cleanly by Ctrl-C.

Starts embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL name other servers), each
with a password kept in $VAR_DIR (made on the first start; the services get it in their URLs,
what is printed never shows it), migrates, makes sure the admin token kept in
$VAR_DIR/admin-token exists (created on the first start; a revoked one is refused, not revived),
then starts every service in SERVICES and prints the token with a curl line to try.
A lock on $VAR_DIR refuses a second stack on the same data; the lock dies with the process, so
a crashed run needs no clean-up.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from core.harness.embedded import kept_password, start_postgres, start_redis
from core.harness.postgres_user import postgres_data_dir
from core.harness.settings import StackSettings
from core.process import Child, StopSignals, spawn, stop_children
from core.settings import (
    EMBEDDED_PASSWORD_FILES,
    KEPT_SECRET_FILES,
    SIGNING_KEY_FILE,
    url_with_password,
    url_without_password,
)


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    url: str | None = None  # printed, and polled until it answers


def services(settings: StackSettings) -> list[Service]:
    """Every long-running service of the stack: one line each, started side by side.

    web and algorithm start through their own entry points, which read their own settings
    (workers, limits) from the same environment.
    """
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO"]
    algorithm = f"http://{settings.algorithm_host}:{settings.algorithm_port}"
    web = f"http://{settings.web_host}:{settings.web_port}"
    return [
        Service("worker", celery),
        Service("algorithm", [py, "-m", "algorithm"], url=f"{algorithm}/health/live"),
        Service("web", [py, "-m", "web"], url=f"{web}/health/live"),
    ]


def metrics_urls(settings: StackSettings) -> str:
    """Where Prometheus scrapes each service (README "Observability")."""
    urls = [
        f"http://{settings.web_host}:{settings.web_port}/metrics",
        f"http://{settings.algorithm_host}:{settings.algorithm_port}/metrics",
    ]
    if settings.worker_metrics_port:
        urls.append(f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics")
    token = " (bearer METRICS_TOKEN)" if settings.metrics_token else ""
    return f"metrics{token}:\n  " + "\n  ".join(urls)


class AlreadyRunningError(RuntimeError):
    pass


def lock_var_dir(var_dir: Path) -> Any:
    """Hold an exclusive lock on $VAR_DIR for the life of this process."""
    var_dir.mkdir(parents=True, exist_ok=True)
    handle = open(var_dir / "stack.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        raise AlreadyRunningError(
            f"another `make run` (pid {owner}) is using {var_dir.resolve()}; stop it first "
            "or set VAR_DIR to another directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def kept_secret(var_dir: Path, name: str, *, prefix: str = "") -> str:
    """A random secret kept in $VAR_DIR/<name> (owner-only), so local runs need no configuration."""
    path = var_dir / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(prefix + secrets.token_urlsafe(50))
    return path.read_text().strip()


def secret_key(var_dir: Path) -> str:
    """The Django secret key kept under $VAR_DIR."""
    return kept_secret(var_dir, KEPT_SECRET_FILES["DJANGO_SECRET_KEY"])


def service_token(var_dir: Path) -> str:
    """The algorithm service's token kept under $VAR_DIR; web presents it."""
    return kept_secret(var_dir, KEPT_SECRET_FILES["ALGORITHM_TOKEN"])


def model_signing_key(var_dir: Path) -> str:
    """The key that signs model manifests, kept under $VAR_DIR (beside, not in, the model root)."""
    return kept_secret(var_dir, SIGNING_KEY_FILE)


def admin_token(var_dir: Path) -> Path:
    """$VAR_DIR/admin-token (mode 0600): an admin token's secret, made on the first start."""
    kept_secret(var_dir, "admin-token", prefix="tcf_")
    return var_dir / "admin-token"


def start_admin_token(env: dict[str, str], token_path: Path) -> Child:
    """Start giving the secret in `token_path` the token "admin" (the secret travels in the
    environment); `check_admin_token` waits for the answer.

    A secret that was revoked (or expired) is refused, not revived: the operator rotates it.
    """
    secret = token_path.read_text().strip()
    command = [sys.executable, "-m", "web", "createtoken", "--name", "admin", "--role", "admin"]
    command += ["--from-env", "ADMIN_TOKEN"]
    return spawn("createtoken", command, env={**env, "ADMIN_TOKEN": secret})


def check_admin_token(child: Child, token_path: Path) -> None:
    """Wait for `start_admin_token`'s command; an error if the token was not set up."""
    if child.popen.wait() != 0:
        raise RuntimeError(
            f"the admin token kept in {token_path.resolve()} was not set up (see above); if it "
            f"was revoked, rotate it: delete {token_path.resolve()} and run again, which makes "
            "a new one"
        )


def print_admin_token(token_path: Path, web_url: str) -> None:
    print(
        f"admin token: {token_path.read_text().strip()}  (kept in {token_path.resolve()}; "
        "more tokens: .venv/bin/python -m web createtoken --help)\n"
        f"  export TOKEN=$(cat {token_path.resolve()})\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" {web_url}/api/data/',
        flush=True,
    )


def password_file(settings: StackSettings, variable: str) -> Path | None:
    """$VAR_DIR's password file of the embedded server behind `variable` (DATABASE_URL or
    REDIS_URL); None when the environment names another server."""
    name = "database" if variable == "DATABASE_URL" else "redis"
    if not settings.uses_embedded(name):
        return None
    return settings.var_dir / EMBEDDED_PASSWORD_FILES[variable]


def server_urls(settings: StackSettings) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL as the services get them: an embedded server's with its
    password (kept in $VAR_DIR, made on the first start), another server's as they were set."""
    urls = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    for variable, url in urls.items():
        path = password_file(settings, variable)
        if path is not None:
            urls[variable] = url_with_password(url, kept_password(path))
    return urls


def print_server_urls(settings: StackSettings, urls: dict[str, str]) -> None:
    """The servers' URLs without their passwords, and where an embedded server's is kept."""
    for label, variable in (("database", "DATABASE_URL"), ("redis", "REDIS_URL")):
        path = password_file(settings, variable)
        kept = f"  (password in {path})" if path is not None else ""
        print(f"{label + ':':<9} {url_without_password(urls[variable])}{kept}", flush=True)


def start_embedded(settings: StackSettings, urls: dict[str, str], logs: Path) -> list[Child]:
    """Start the embedded servers whose URL the environment does not set."""
    children = []
    if settings.uses_embedded("database"):
        url = urlsplit(urls["DATABASE_URL"])
        postgres = start_postgres(
            postgres_data_dir(settings.var_dir),
            port=url.port or 5432,
            database=url.path.lstrip("/"),
            password=unquote(url.password or ""),
            log_path=logs / "postgres.log",
        )
        children.append(postgres)
    if settings.uses_embedded("redis"):
        url = urlsplit(urls["REDIS_URL"])
        redis = start_redis(
            settings.var_dir / "redis",
            port=url.port or 6379,
            password=unquote(url.password or ""),
            log_path=logs / "redis.log",
        )
        children.append(redis)
    return children


def wait_until_answers(url: str, *, child: Child, timeout: float) -> None:
    """Poll `url` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.running():
            raise RuntimeError(f"{child.name} exited with code {child.popen.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{child.name} did not answer on {url} within {timeout:.0f}s")


def service_env(settings: StackSettings, urls: dict[str, str]) -> dict[str, str]:
    """The environment every service starts with: the caller's, plus what this stack decided.

    web presents ALGORITHM_TOKEN and the algorithm service accepts ALGORITHM_TOKENS; unset, both
    are the token kept under $VAR_DIR. The server URLs carry the embedded servers' passwords.
    web gets MODEL_SIGNING_KEY too (one environment for all), though only the worker and the
    algorithm service read it.
    """
    token = settings.algorithm_token or service_token(settings.var_dir)
    return {
        **os.environ,
        "VAR_DIR": str(settings.var_dir),
        **urls,
        "ALGORITHM_URL": settings.algorithm_url,
        "DJANGO_SECRET_KEY": settings.django_secret_key or secret_key(settings.var_dir),
        "ALGORITHM_TOKEN": token,
        "ALGORITHM_TOKENS": settings.algorithm_tokens or token,
        "MODEL_SIGNING_KEY": settings.model_signing_key or model_signing_key(settings.var_dir),
    }


def run(settings: StackSettings) -> int:
    lock = lock_var_dir(settings.var_dir)
    logs = settings.var_dir / "logs"
    logs.mkdir(exist_ok=True)
    urls = server_urls(settings)
    env = service_env(settings, urls)
    stop = StopSignals()
    children: list[Child] = []
    try:
        children += start_embedded(settings, urls, logs)
        print_server_urls(settings, urls)
        migrate = spawn(
            "migrate",
            [sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
            env={**env, "DJANGO_SETTINGS_MODULE": "web.settings"},
        )
        if migrate.popen.wait() != 0:
            raise RuntimeError("migrations failed")
        token_path = admin_token(settings.var_dir)
        # All at once, beside the admin token's command: each start is seconds of imports, and
        # web needs only the algorithm service's address, not an answer from it. Then each
        # one's URL as it answers, in order.
        token_command = start_admin_token(env, token_path)
        started = [
            (service, spawn(service.name, service.argv, env=env, log_path=None))
            for service in services(settings)
        ]
        children += [child for _, child in started]
        check_admin_token(token_command, token_path)
        for service, child in started:
            if stop.requested:
                return 0
            if service.url:
                wait_until_answers(service.url, child=child, timeout=60)
                print(f"{service.name:<9} {service.url.rsplit('/health', 1)[0]}", flush=True)
        print(metrics_urls(settings), flush=True)
        print_admin_token(token_path, f"http://{settings.web_host}:{settings.web_port}")
        print("ready; press Ctrl-C to stop", flush=True)
        while not stop.requested:
            exited = [child for child in children if not child.running()]
            if exited:
                raise RuntimeError(
                    f"{exited[0].name} exited with code {exited[0].popen.returncode}"
                )
            time.sleep(0.2)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        if stop.requested:
            return 0
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping...", flush=True)
        stop_children(children)
        lock.close()
        print("stopped", flush=True)


def main() -> int:
    try:
        return run(StackSettings())
    except (AlreadyRunningError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
