"""`make run` as a person runs it: from an empty VAR_DIR to ready, then Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.harness.postgres_user import SHARED_POSTGRES_ROOT, postgres_data_dir, sweep_orphans
from core.harness.scratch import free_port, make_scratch_dir
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def stack_env(var_dir: Path | None) -> dict[str, str]:
    """The environment of a person's shell: none of the session's settings, free ports, one
    process per server pool.

    `var_dir` None leaves VAR_DIR unset: the default, `var` relative to the working directory.
    One web and one algorithm process instead of the two each that two cores give: every
    process of a pool starts the same way and dies the same way, and each one costs seconds of
    imports per start (three stack starts here).
    """
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    generated = ("DJANGO_SECRET_KEY", "ALGORITHM_TOKEN", "ALGORITHM_TOKENS", "MODEL_SIGNING_KEY")
    for variable in (*generated, "VAR_DIR"):
        env.pop(variable, None)
    if var_dir is not None:
        env["VAR_DIR"] = str(var_dir)
    env.update(
        WEB_PORT=str(free_port()),
        ALGORITHM_PORT=str(free_port()),
        EMBEDDED_POSTGRES_PORT=str(free_port()),
        EMBEDDED_REDIS_PORT=str(free_port()),
        WORKER_METRICS_PORT=str(free_port()),
        WEB_WORKERS="1",
        ALGORITHM_WORKERS="1",
    )
    return env


class Running:
    """A started `make run` and what it has printed so far.

    A thread reads its output as it comes, so the pipe never fills and a test can wait for a
    line the way a person watches the terminal.
    """

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def printed(self) -> str:
        return "".join(self.lines)

    def finish(self, timeout: float) -> str:
        """Wait for the exit and return everything printed."""
        self.popen.wait(timeout=timeout)
        self.reader.join(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.printed()


def start_make_run(env: dict[str, str]) -> Running:
    # A new session, like a terminal's foreground job: Ctrl-C goes to the whole group.
    return Running(
        subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )


def start_in_checkout(env: dict[str, str], cwd: Path) -> Running:
    """What `make run` runs (`.venv/bin/python -m core.harness.run`), from `cwd`.

    `cwd` stands for a checkout of its own, so the relative default VAR_DIR (`var`) is not the
    user's `var` in this one; the code is this checkout's (PYTHONPATH).
    """
    return Running(
        subprocess.Popen(
            [sys.executable, "-m", "core.harness.run"],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(ROOT)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )


def wait_ready(env: dict[str, str], running: Running, timeout: float = 120) -> dict:
    """Wait until `make run` says it is ready (a person presses Ctrl-C only after that line) and
    web's readiness answer (which checks the database and algorithm) is in; return the answer."""
    url = f"http://127.0.0.1:{env['WEB_PORT']}/health/ready"

    def answer() -> dict | None:
        assert running.popen.poll() is None, running.finish(timeout=10)
        if "ready; press Ctrl-C to stop" not in running.printed():
            return None
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.load(response))
        except OSError:
            return None

    return wait_until(answer, timeout=timeout, interval=0.05, what="make run ready")


def api_status(env: dict[str, str], token: str | None) -> int:
    """The status of GET /api/data/ with `Authorization: Bearer <token>` (or no header)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['WEB_PORT']}/api/data/", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(needle in cmdline for needle in needles):
                found.append(f"{entry.name}: {cmdline}")
    return found


def web_command(env: dict[str, str], cwd: Path, *args: str) -> str:
    """`.venv/bin/python -m web ARGS` typed in the checkout beside a running `make run`: the
    same shell as make run's (no DJANGO_SECRET_KEY, no ALGORITHM_TOKEN); returns its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "web", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def check_readme_token_commands(env: dict[str, str], checkout: Path) -> None:
    """README "Managing tokens": create a reader token, list it, revoke it."""
    secret = web_command(env, checkout, "createtoken", "--name", "ci", "--role", "reader").strip()
    assert secret.startswith("tcf_")
    assert api_status(env, secret) == 200  # a reader call
    listed = web_command(env, checkout, "listtokens")
    assert any(line.split()[1:4] == ["ci", "reader", "active"] for line in listed.splitlines())
    assert secret not in listed
    web_command(env, checkout, "revoketoken", "ci")
    # Each web process trusts a token check for AUTH_CACHE_SECONDS (2).
    wait_until(lambda: api_status(env, secret) == 401, timeout=10, what="revoked token refused")


@pytest.fixture
def checkout(state_dir: Path) -> Path:
    """An ordinary checkout's directory: readable by everyone (0755, as under /home or /srv)."""
    path = make_scratch_dir("checkout-", parent=state_dir)
    path.chmod(0o755)
    return path


def test_make_run_as_the_readme_says_recovers_after_a_crash_and_ctrl_c_leaves_nothing_behind(
    checkout: Path,
) -> None:
    """No settings at all: VAR_DIR is the relative default `var`, in a directory everyone reads.

    PostgreSQL changes into its data directory, so a relative path handed to it (its socket
    directory) used to point nowhere: `could not create lock file "var/postgres/.s.PGSQL..."`.
    The first stack is then killed outright (a crash); the second one, started on what it left, is
    the one stopped with Ctrl-C. Two starts check both the recovery and the clean stop.
    """
    env = stack_env(None)
    var_dir = checkout / "var"
    runner = start_in_checkout(env, checkout)
    try:
        ready = wait_ready(env, runner)
        assert ready["status"] == "ok"
        token_file = var_dir / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert (var_dir / "model_signing_key").stat().st_mode & 0o777 == 0o600
        token = token_file.read_text()
        assert api_status(env, token.strip()) == 200
        assert api_status(env, None) == 401

        # A second `make run` in the same checkout, refused; the README's token commands run
        # meanwhile (each is seconds of imports, and neither waits for the other).
        second = start_in_checkout(env, checkout)
        try:
            check_readme_token_commands(env, checkout)
        finally:
            refused = second.finish(timeout=60)  # it ends by itself, also if a command failed
        assert second.popen.returncode != 0
        assert "another `make run`" in refused
        assert wait_ready(env, runner)["status"] == "ok"  # the first stack is unharmed
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # no clean-up at all: stale pid files remain
        runner.finish(timeout=10)
    # Children die with their parent.
    wait_until(lambda: not processes_mentioning(str(checkout)), timeout=20, what="no process left")

    restarted = start_in_checkout(env, checkout)
    try:
        assert wait_ready(env, restarted)["status"] == "ok"
        assert token_file.read_text() == token  # kept across starts
        assert api_status(env, token.strip()) == 200
    finally:
        if restarted.popen.poll() is None:
            os.killpg(restarted.pid, signal.SIGINT)
        output = restarted.finish(timeout=60)
    assert restarted.popen.returncode == 0, output
    assert output.rstrip().endswith("stopped"), output
    assert f"admin token: {token.strip()}" in output
    assert f'curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{env["WEB_PORT"]}' in output
    # The servers' URLs without their passwords, and where each password is kept (owner-only).
    for label, name in (("database", "postgres-password"), ("redis", "redis-password")):
        kept = var_dir / name
        assert kept.stat().st_mode & 0o777 == 0o600
        assert kept.read_text().strip() not in output
        assert f"{label + ':':<9} " in output and f"(password in {kept})" in output
    assert "postgresql://postgres:***@127.0.0.1" in output
    ports = (f"-p {env['EMBEDDED_POSTGRES_PORT']}", f"--port {env['EMBEDDED_REDIS_PORT']}")
    # Gone within half a second of "stopped" (the test slept that long, then looked once).
    deadline = time.monotonic() + 0.5
    while (left := processes_mentioning(str(checkout), *ports)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []
    assert (var_dir / "postgres" / "PG_VERSION").exists()  # data is kept for the next run


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to a system user")
def test_make_run_with_var_dir_in_a_private_directory_keeps_postgres_elsewhere(
    state_dir: Path,
) -> None:
    private = Path(tempfile.mkdtemp(prefix="private-", dir=state_dir))  # 0700, like /root
    env = stack_env(private / "var")
    data_dir = postgres_data_dir(private / "var")
    assert data_dir.is_relative_to(SHARED_POSTGRES_ROOT)
    process = start_make_run(env)
    try:
        assert wait_ready(env, process)["status"] == "ok"
        assert (data_dir / "PG_VERSION").exists()
        assert (private / "var" / "postgres").resolve() == data_dir  # found from VAR_DIR
        assert (private.stat().st_mode & 0o777) == 0o700  # nothing opened up
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output = process.finish(timeout=60)
        shutil.rmtree(private)  # VAR_DIR goes: its PostgreSQL data goes at the next start
        removed = sweep_orphans()
    assert f"PostgreSQL data: {data_dir}" in output, output
    assert (data_dir.parent, private / "var") in removed
    assert not data_dir.parent.exists()
