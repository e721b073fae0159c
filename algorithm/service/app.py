"""The algorithm service's app factories: the Flask app, and the ASGI app that serves it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from algorithm.service import inference_protocol, observability
from algorithm.service.auth import require_service_token, token_before_body
from algorithm.service.config import AlgorithmSettings, get_settings
from algorithm.service.errors import ApiError
from algorithm.service.event_loop import FlaskASGI, LoopFlask
from algorithm.service.observability import ObservedASGI
from algorithm.service.openapi import docs
from algorithm.service.runtime import ServingRuntime
from algorithm.service.training_queue import TrainingQueue
from algorithm.service.views import api
from core.jobs import JobStore
from core.request_body import BodyBudget

log = logging.getLogger(__name__)

# The body any route but /predict may have: /train takes none, the others are GETs.
BODYLESS_MAX_BYTES = 4 * 1024


def create_app(
    settings: AlgorithmSettings | None = None,
    *,
    job_store: JobStore | None = None,
    enqueue: Callable[..., None] | None = None,
) -> LoopFlask:
    """Build the Flask app with its runtime; tests pass their own settings or collaborators."""
    settings = settings or get_settings()
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
    on_close: list[Callable[[], None]] = [redis_client.close]
    if enqueue is None:
        queue = TrainingQueue(settings.redis_url)
        enqueue = queue.enqueue
        on_close.append(queue.close)
    app = LoopFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.predict_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["textclf"] = ServingRuntime(
        settings,
        job_store=job_store or JobStore(redis_client, job_ttl_seconds=settings.job_ttl_seconds),
        enqueue=enqueue,
        redis_client=redis_client,
        on_close=on_close,
    )
    register_error_handlers(app)
    observability.install(app, metrics_token=settings.metrics_token)
    require_service_token(app, settings.algorithm_tokens)
    app.register_blueprint(api)
    app.register_blueprint(docs)
    inference_protocol.install(app)
    return app


def create_asgi_app(
    settings: AlgorithmSettings | None = None,
    *,
    job_store: JobStore | None = None,
    enqueue: Callable[..., None] | None = None,
    observe: bool = True,
) -> FlaskASGI | ObservedASGI:
    """The service as Hypercorn serves it: the Flask app on the server's loop, with its lifespan.

    `observe=False` leaves out request ids, request metrics and the access log (the bench's
    comparison).
    """
    settings = settings or get_settings()
    app = create_app(settings, job_store=job_store, enqueue=enqueue)
    runtime: ServingRuntime = app.extensions["textclf"]
    served = FlaskASGI(
        app,
        max_body_bytes=BODYLESS_MAX_BYTES,
        body_limits={
            "api.predict": settings.predict_max_body_bytes,
            "v2.infer": settings.predict_max_body_bytes,
        },
        admits_body=token_before_body(settings.algorithm_tokens),
        body_timeout_seconds=settings.body_timeout_seconds,
        body_budget=BodyBudget(settings.body_budget_bytes),
        on_startup=[runtime.start],
        on_shutdown=[runtime.aclose],
    )
    return ObservedASGI(served, access_log=settings.algorithm_access_log) if observe else served


def error_response(status: int, code: str, detail: str, **extra: Any) -> tuple[Response, int]:
    """The one error shape."""
    return jsonify({"error": code, "detail": detail, **extra}), status


def register_error_handlers(app: Flask) -> None:
    """Every error, ours or Werkzeug's, answers in the error shape; never an HTML page."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> tuple[Response, int]:
        response, status = error_response(exc.status, exc.code, exc.detail, **exc.extra)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        response, status = error_response(exc.code or 500, code, exc.description or exc.name)
        # Werkzeug's own headers, e.g. the `Allow` every 405 must carry (RFC 9110).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", ApiError.default_detail)
