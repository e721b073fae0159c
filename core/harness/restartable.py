"""PostgreSQL and Redis that a test or a chaos run owns alone, so it may stop and restart them.

Each keeps its data directory and port across restarts, as a real server restart would: clients
see their connections cut and refused, then the same address answering again. `RestartableRedis`
can also come back empty (its append-only file removed), as a Redis without persistence does.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from core.harness.embedded import start_postgres, start_redis
from core.harness.scratch import free_port
from core.process import Child, stop_children


class RestartablePostgres:
    def __init__(self, data_dir: Path, *, database: str, log_path: Path) -> None:
        self.data_dir = data_dir
        self.database = database
        self.log_path = log_path
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)  # URL-safe: goes into the URL as it is
        self._child: Child | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        """Start (again), on the same port and data; returns once it accepts sessions."""
        self._child = start_postgres(
            self.data_dir,
            port=self.port,
            database=self.database,
            password=self.password,
            log_path=self.log_path,
        )

    def stop(self) -> None:
        """A fast shutdown: every session is ended, new ones are refused until `start`."""
        if self._child is not None:
            stop_children([self._child])
            self._child = None


class RestartableRedis:
    def __init__(self, data_dir: Path, *, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self._child: Child | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self, *, empty: bool = False) -> None:
        """Start (again) on the same port; `empty`: without the data it had (nothing persisted)."""
        if empty:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._child = start_redis(
            self.data_dir, port=self.port, password=self.password, log_path=self.log_path
        )

    def stop(self) -> None:
        if self._child is not None:
            stop_children([self._child])
            self._child = None
