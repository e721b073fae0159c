"""Real PostgreSQL and Redis for the whole test session.

Started the way `make run` starts them (embedded, free ports, a temporary directory) unless
DATABASE_URL / REDIS_URL name servers to use. They are started in `pytest_configure`, before
Django reads its settings, and stopped when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stack.embedded import free_port, start_postgres, start_redis
from stack.process import Child, stop_children

_children: list[Child] = []
_state_dir: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _state_dir
    _state_dir = Path(tempfile.mkdtemp(prefix="textclf-tests-"))
    logs = _state_dir / "logs"
    logs.mkdir()
    if not os.environ.get("DATABASE_URL"):
        port = free_port()
        _children.append(
            start_postgres(_state_dir / "postgres", port=port, database="textclf",
                           log_path=logs / "postgres.log")
        )  # fmt: skip
        os.environ["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{port}/textclf"
    if not os.environ.get("REDIS_URL"):
        port = free_port()
        _children.append(start_redis(_state_dir / "redis", port=port, log_path=logs / "redis.log"))
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["VAR_DIR"] = str(_state_dir / "var")
    os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    import django

    django.setup()  # now that the URLs are known; test modules import models at collection


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_children(_children)
    if _state_dir is not None:
        shutil.rmtree(_state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """The session's temporary directory (embedded server data, logs, VAR_DIR)."""
    assert _state_dir is not None
    return _state_dir
