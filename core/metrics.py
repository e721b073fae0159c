"""Prometheus metrics that count every process of a service (prometheus-client multiprocess mode).

Each server pool gives its processes one directory (`PROMETHEUS_MULTIPROC_DIR`, set before they
start, wiped at pool start) where every process keeps its values in memory-mapped files; a scrape
answered by any process merges all files, so it counts every process. Counters and histograms of
a dead process stay (what it counted happened) until the service restarts; gauges use a `live*`
mode, and their files are removed when the pool sees the process exit (`mark_process_dead`).
Without the variable (tests in one process) the default registry is exposed instead.
"""

from __future__ import annotations

import hmac
import os
import shutil
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def use_multiprocess_files() -> None:
    """Make metrics created from now on keep their values in $PROMETHEUS_MULTIPROC_DIR's files.

    prometheus-client does this itself when the variable is set before it is imported; ours
    also spares every increment a getpid() system call (the pid is refreshed after a fork).
    Done once per process: two value stores would both write this process's files.
    """
    if not getattr(values.ValueClass, "uses_cached_pid", False):
        values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid)
        values.ValueClass.uses_cached_pid = True


if os.environ.get(MULTIPROC_DIR_ENV):
    use_multiprocess_files()

CONTENT_TYPE = CONTENT_TYPE_LATEST
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Request durations of both HTTP services (one definition: tests import both in one process).
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time from receiving a request to its answer, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def prepare_metrics_dir(path: Path) -> Path:
    """An empty directory for a service's metric files (what a previous run left is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def mark_process_dead(pid: int, path: Path) -> None:
    """Drop the live gauges of a process that exited (its counters stay)."""
    multiprocess.mark_process_dead(pid, str(path))


def render_metrics() -> bytes:
    """The Prometheus text exposition of this service: every process's metrics."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def scrape_allowed(authorization: str | None, token: str) -> bool:
    """Open when no METRICS_TOKEN is set; else only `Authorization: Bearer <token>`."""
    if not token:
        return True
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def http_method_label(method: str) -> str:
    """The method as a label; anything unusual is `other`, so clients cannot add series."""
    return method if method in HTTP_METHODS else "other"


def labelled(metric: Any) -> Callable[..., Any]:
    """`metric.labels(*values)`, memoised: the hot path pays one dict lookup, no lock.

    Only for label values from a small fixed set (route templates, methods, statuses).
    """
    children: dict[Hashable, Any] = {}

    def child(*values: str) -> Any:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child
