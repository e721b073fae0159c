"""Training metrics, request ids and log format in the Celery worker (wired by Celery signals).

Metrics: every training runs in a fresh pool process (`worker_max_tasks_per_child=1`), so the
pool processes write prometheus-client multiprocess files into a directory of this worker
(`$VAR_DIR/metrics/worker-<pid>`, created at start; directories of dead workers are removed),
and the worker's main process, which outlives them, serves `GET /metrics` on
`WORKER_METRICS_PORT` from a small HTTP thread. Its own endpoint rather than a push through web:
Prometheus scrapes each worker like any other target, and a worker's numbers do not depend on
web being up. Metrics are created on first use, in the pool process, after the directory is set.

Request ids: the algorithm service sends the id of the request that queued a training as the
task's `request_id` header; `task_prerun` puts it in `REQUEST_ID` for every log line of the task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextvars import Token
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from celery import signals
from prometheus_client import Counter, Histogram

from core.jobs import REQUEST_ID_TASK_HEADER
from core.logs import REQUEST_ID, formatter_for
from core.metrics import (
    CONTENT_TYPE,
    MULTIPROC_DIR_ENV,
    mark_process_dead,
    prepare_metrics_dir,
    render_metrics,
    scrape_allowed,
    use_multiprocess_files,
)
from core.model_names import DEFAULT_MODEL, is_model_name
from worker.config import get_settings

logger = logging.getLogger(__name__)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)


class TrainingMetrics(NamedTuple):
    runs: Counter
    duration: Histogram
    phases: Histogram
    rows: Histogram


@lru_cache(maxsize=1)
def training_metrics() -> TrainingMetrics:
    """The training metrics, created in the process that first records one."""
    return TrainingMetrics(
        runs=Counter(
            "textclf_training_runs_total",
            "Training runs by outcome (succeeded, failed, skipped, error) and model name.",
            ["outcome", "model"],
        ),
        duration=Histogram(
            "textclf_training_duration_seconds",
            "Duration of training runs, by outcome and model name.",
            ["outcome", "model"],
            buckets=DURATION_BUCKETS,
        ),
        phases=Histogram(
            "textclf_training_phase_duration_seconds",
            "Duration of each phase of a training run (read, fit, publish).",
            ["phase"],
            buckets=DURATION_BUCKETS,
        ),
        rows=Histogram(
            "textclf_training_rows",
            "Rows read by each training run.",
            buckets=(100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000),
        ),
    )


@contextlib.contextmanager
def training_phase(phase: str) -> Iterator[None]:
    """Time one phase of a training (only phases that finish are recorded)."""
    started = time.perf_counter()
    yield
    training_metrics().phases.labels(phase).observe(time.perf_counter() - started)


def record_training_rows(rows: int) -> None:
    training_metrics().rows.observe(rows)


# --- the task: request id in, outcome and duration out ------------------------------------------


def run_model_label(model: object) -> str:
    """The `model` label of a run: its name (a task naming none trains `default`'s job, the only
    ones sent without a name), or `invalid` for a task whose name is not one: a label never
    holds an arbitrary string, so the series stay bounded by the registered names."""
    if model is None:
        return DEFAULT_MODEL
    return model if is_model_name(model) else "invalid"  # type: ignore[return-value]


_running: dict[str, tuple[Token[str | None], float]] = {}


@signals.task_prerun.connect
def _task_started(task_id: str, task: Any, **_: Any) -> None:
    request_id = task.request.get(REQUEST_ID_TASK_HEADER)
    _running[task_id] = (REQUEST_ID.set(request_id), time.perf_counter())


@signals.task_postrun.connect
def _task_finished(
    task_id: str,
    retval: Any = None,
    state: str | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    token, started = _running.pop(task_id, (None, 0.0))
    if state != "RETRY":  # a retry waits for the training lock: the run comes later
        outcome = retval if retval in ("succeeded", "failed") else "skipped"
        outcome = "error" if state == "FAILURE" else outcome
        model = run_model_label((kwargs or {}).get("model"))
        metrics = training_metrics()
        metrics.runs.labels(outcome, model).inc()
        metrics.duration.labels(outcome, model).observe(time.perf_counter() - started)
    if token is not None:
        REQUEST_ID.reset(token)


# --- log lines in the configured format, with the request id ------------------------------------


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _format_log_lines(logger: logging.Logger, **_: Any) -> None:
    formatter = formatter_for(get_settings().log_format)
    for handler in logger.handlers:
        handler.setFormatter(formatter)


# --- the metric files and the endpoint ----------------------------------------------------------


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """In the main process, before the pool starts: the metrics directory and the endpoint."""
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    remove_dead_workers_dirs(settings.metrics_root)
    metrics_dir = prepare_metrics_dir(settings.metrics_root / f"worker-{os.getpid()}")
    os.environ[MULTIPROC_DIR_ENV] = str(metrics_dir)  # inherited by the pool processes
    # prometheus-client picks its value store when it is imported; metrics made from now on
    # (all of them: they are created on first use) write to the directory.
    use_multiprocess_files()
    try:
        server = ThreadingHTTPServer(
            (settings.worker_metrics_host, settings.worker_metrics_port), _MetricsHandler
        )
    except OSError as exc:
        logger.warning(
            "worker metrics not served on %s:%s: %s",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            exc,
        )
        return
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    host, port = server.server_address[:2]
    logger.info("worker metrics on http://%s:%s/metrics", host, port)


@signals.worker_process_shutdown.connect
def _drop_live_gauges(**_: Any) -> None:
    if os.environ.get(MULTIPROC_DIR_ENV):
        mark_process_dead(os.getpid(), Path(os.environ[MULTIPROC_DIR_ENV]))


def remove_dead_workers_dirs(metrics_root: Path) -> None:
    """Remove the metric directories of workers that no longer run (`worker-<pid>`)."""
    for path in metrics_root.glob("worker-*"):
        pid = path.name.removeprefix("worker-")
        if pid.isdigit() and not _running_pid(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running_pid(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, {"error": "not_found", "detail": "Only GET /metrics is served."})
        elif not scrape_allowed(self.headers.get("Authorization"), get_settings().metrics_token):
            detail = "GET /metrics needs the METRICS_TOKEN bearer token."
            self._answer(401, {"error": "unauthorized", "detail": detail})
        else:
            self._send(200, render_metrics(), CONTENT_TYPE)

    def _answer(self, status: int, body: dict[str, str]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the worker's log."""
