"""Request ids, metrics and the access log of the algorithm service.

`ObservedASGI` wraps the service's ASGI app: it takes web's `X-Request-ID` (or makes one), sets
it in `REQUEST_ID` for every log line of the request (and for the Celery task a training request
queues), returns it on the response, times the request into
`http_server_request_duration_seconds` by route template and writes the access line. The other
metrics are recorded where things happen, through the `record_*` functions below. `GET /metrics`
merges every process's metric files (core/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import Counter, Gauge, Histogram

from algorithm.service.errors import Unauthorized
from algorithm.service.event_loop import ROUTE_TEMPLATE
from core.logs import REQUEST_ID, accepted_request_id
from core.metrics import (
    CONTENT_TYPE,
    HTTP_DURATION,
    http_method_label,
    labelled,
    render_metrics,
    scrape_allowed,
)

access_log = logging.getLogger("algorithm.access")
UNMATCHED_ROUTE = "unmatched"
NO_MODEL = "none"  # the version label while a process serves no model

PREDICTIONS = Counter("textclf_predictions_total", "Predict requests answered with labels.")
PREDICTED_TEXTS = Counter("textclf_predicted_texts_total", "Texts labelled by predict requests.")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000)
BATCH_SIZE = Histogram(
    "textclf_predict_batch_size",
    "Texts per model call: concurrent requests coalesced by the micro-batcher, or one big body.",
    buckets=BATCH_BUCKETS,
)
MODEL_RELOADS = Counter(
    "textclf_model_reloads_total",
    "Attempts to load a newly published model version, by outcome (success, failure).",
    ["outcome"],
)
MODEL_SERVED = Gauge(
    "textclf_model_served_info",
    'The version of each model each process serves: 1 on its version (version="none" before any).',
    ["model", "version"],
    multiprocess_mode="liveall",  # one series per live process; gone when it exits
)
# Per model name (the unlabelled totals above stay: their series and dashboards predate names).
# The `model` label only ever holds names a process loaded, never one a request merely asked for.
MODEL_PREDICTIONS = Counter(
    "textclf_model_predictions_total", "Predict requests answered with labels, by model.", ["model"]
)
MODEL_BATCH_SIZE = Histogram(
    "textclf_model_predict_batch_size",
    "Texts per model call, by model.",
    ["model"],
    buckets=BATCH_BUCKETS,
)
MODEL_LOADS = Counter(
    "textclf_model_loads_total", "Models loaded into a process on demand or at start.", ["model"]
)
MODEL_UNLOADS = Counter(
    "textclf_model_unloads_total",
    "Models unloaded to keep a process within MODEL_MEMORY_BUDGET_MB (least recently used first).",
    ["model"],
)
MODEL_MEMORY = Gauge(
    "textclf_model_memory_bytes",
    "What each loaded model costs its process (RSS growth across its load, at least its files).",
    ["model"],
    multiprocess_mode="livesum",  # summed over live processes: the model's memory on this host
)
MODEL_LOADS_REFUSED = Counter(
    "textclf_model_loads_refused_total",
    "Model versions this process refused to load, by reason: unsigned, unknown_key (signed with a "
    "key not held here), bad_signature (manifest changed after signing), sha256_mismatch (a "
    "pickle changed), invalid (missing, unreadable or not a model).",
    ["reason"],
)
SHADOW_COMPARED = Counter(
    "textclf_shadow_compared_total",
    "Predictions also scored by the challenger model, by model name.",
    ["model"],
)
SHADOW_AGREED = Counter(
    "textclf_shadow_agreed_total",
    "Shadow predictions where the challenger agreed, by model name.",
    ["model"],
)
_request_duration = labelled(HTTP_DURATION)
_reloads = labelled(MODEL_RELOADS)


class ModelCallMetrics:
    """The series one model's batcher records into, labelled once (not per model call)."""

    def __init__(self, model: str) -> None:
        self._predictions = MODEL_PREDICTIONS.labels(model)
        self._batch_size = MODEL_BATCH_SIZE.labels(model)

    def record_predictions(self, *, requests: int, texts: int) -> None:
        """Count predict requests answered with labels: once per model call, not per request."""
        PREDICTIONS.inc(requests)
        PREDICTED_TEXTS.inc(texts)
        self._predictions.inc(requests)

    def record_batch(self, texts: int) -> None:
        BATCH_SIZE.observe(texts)
        self._batch_size.observe(texts)


def record_model_loaded(model: str, memory_bytes: int) -> None:
    MODEL_LOADS.labels(model).inc()
    MODEL_MEMORY.labels(model).set(memory_bytes)


def record_model_memory(model: str, memory_bytes: int) -> None:
    MODEL_MEMORY.labels(model).set(memory_bytes)


def record_model_unloaded(model: str, version: str | None) -> None:
    """Count the unload and take the model's gauges down.

    In multiprocess mode a removed child's value stays in this process's metric file: it is set
    to 0 first, so the series reads 0 (not its last value) until the process exits.
    """
    MODEL_UNLOADS.labels(model).inc()
    for gauge, labels in ((MODEL_MEMORY, (model,)), (MODEL_SERVED, (model, version or NO_MODEL))):
        gauge.labels(*labels).set(0)
        gauge.remove(*labels)


def record_reload(*, succeeded: bool) -> None:
    _reloads("success" if succeeded else "failure").inc()


def record_refused_load(reason: str) -> None:
    MODEL_LOADS_REFUSED.labels(reason).inc()


def record_served_version(model: str, previous: str | None, current: str | None) -> None:
    """Move this process's served-version series of `model` from `previous` to `current`."""
    if previous != current:
        MODEL_SERVED.labels(model, previous or NO_MODEL).set(0)
    MODEL_SERVED.labels(model, current or NO_MODEL).set(1)


def record_shadow(model: str, *, compared: int, agreed: int) -> None:
    """Live predictions of `model` scored again by its challenger, and how many it agreed with."""
    SHADOW_COMPARED.labels(model).inc(compared)
    SHADOW_AGREED.labels(model).inc(agreed)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ObservedASGI:
    """Request id, duration histogram and access line around an ASGI app's HTTP requests."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = accepted_request_id(_header(scope, b"x-request-id"))
        id_token = REQUEST_ID.set(request_id)
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = http_method_label(scope["method"])
            route = scope.get(ROUTE_TEMPLATE, UNMATCHED_ROUTE)  # FlaskASGI's matched rule
            _request_duration(route, method, str(status)).observe(seconds)
            if self.access_log:
                duration_ms = round(seconds * 1000, 2)
                access_log.info(
                    "%s %s %s %.2f ms",
                    scope["method"],
                    route,
                    status,
                    duration_ms,
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )
            REQUEST_ID.reset(id_token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


metrics_api = Blueprint("metrics", __name__)


@metrics_api.get("/metrics")
async def metrics() -> Response:
    """Every process's metrics in the Prometheus text format; open unless METRICS_TOKEN is set.

    The service token is not asked for here (algorithm/service/auth.py): scrapers hold
    METRICS_TOKEN.
    """
    presented = request.headers.get("Authorization")
    if not scrape_allowed(presented, current_app.config["METRICS_TOKEN"]):
        raise Unauthorized(
            "GET /metrics needs the METRICS_TOKEN bearer token.", invalid=bool(presented)
        )
    return Response(await asyncio.to_thread(render_metrics), content_type=CONTENT_TYPE)


def install(app: Flask, *, metrics_token: str) -> None:
    """Serve /metrics (`FlaskASGI` reports matched routes to `ObservedASGI` in the scope)."""
    app.config["METRICS_TOKEN"] = metrics_token
    app.register_blueprint(metrics_api)
