"""`python -m web COMMAND` beside `make run`: the secrets make run keeps under $VAR_DIR, and only
where nothing is set. The commands themselves run against a live stack in test_make_run.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.harness.run import secret_key, service_token
from core.harness.scratch import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_run_var_dir(tmp_path: Path) -> Path:
    """A VAR_DIR holding the secrets `make run` generates on its first start."""
    secret_key(tmp_path)
    service_token(tmp_path)
    return tmp_path


def test_a_command_takes_the_kept_secrets_only_where_unset(
    make_run_var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.__main__ import use_make_run_secrets

    monkeypatch.setenv("VAR_DIR", str(make_run_var_dir))
    monkeypatch.setenv("DJANGO_SECRET_KEY", "set-by-the-operator-and-long-enough")
    monkeypatch.delenv("ALGORITHM_TOKEN")

    use_make_run_secrets()

    assert os.environ["DJANGO_SECRET_KEY"] == "set-by-the-operator-and-long-enough"
    assert os.environ["ALGORITHM_TOKEN"] == service_token(make_run_var_dir)


def test_without_kept_secrets_a_command_still_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.__main__ import use_make_run_secrets

    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.delenv("ALGORITHM_TOKEN")

    use_make_run_secrets()

    assert "ALGORITHM_TOKEN" not in os.environ


def test_the_server_never_takes_secrets_from_files(make_run_var_dir: Path) -> None:
    """A deployment that forgot DJANGO_SECRET_KEY refuses to start, kept files or not."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "ALGORITHM_TOKEN"}}
    env.update(VAR_DIR=str(make_run_var_dir), WEB_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    refused = subprocess.run(
        [sys.executable, "-m", "web"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is missing" in refused.stderr
    assert secret_key(make_run_var_dir) not in refused.stdout + refused.stderr


def test_a_command_completes_the_default_server_urls_with_the_kept_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.__main__ import use_make_run_secrets

    (tmp_path / "postgres-password").write_text("pg-secret\n")
    (tmp_path / "redis-password").write_text("redis-secret\n")
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")  # set: it wins

    use_make_run_secrets()

    assert os.environ["DATABASE_URL"] == "postgresql://postgres:pg-secret@127.0.0.1:54329/textclf"
    assert os.environ["REDIS_URL"] == "redis://cache.internal:6379/2"
