"""The algorithm service's app factories: the Flask app, and the ASGI app that serves it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from algorithm.config import AlgorithmSettings, get_settings
from algorithm.errors import register_error_handlers
from algorithm.event_loop import FlaskASGI, LoopFlask
from algorithm.openapi import docs
from algorithm.runtime import ServingRuntime
from algorithm.views import api


def create_app(
    settings: AlgorithmSettings | None = None,
    *,
    job_store: Any | None = None,
    enqueue: Callable[[str], None] | None = None,
) -> LoopFlask:
    """Build the Flask app with its runtime; tests pass their own settings or collaborators."""
    settings = settings or get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
    if job_store is None:
        from worker.jobs import JobStore

        job_store = JobStore(redis_client)
    if enqueue is None:
        from worker.celery_app import enqueue_training

        enqueue = enqueue_training
    app = LoopFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.predict_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = ServingRuntime(
        settings, job_store=job_store, enqueue=enqueue, redis_client=redis_client
    )
    app.extensions["textclf"] = runtime
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(docs)
    return app


def create_asgi_app(
    settings: AlgorithmSettings | None = None,
    *,
    job_store: Any | None = None,
    enqueue: Callable[[str], None] | None = None,
) -> FlaskASGI:
    """The service as Hypercorn serves it: the Flask app on the server's loop, with its lifespan."""
    settings = settings or get_settings()
    app = create_app(settings, job_store=job_store, enqueue=enqueue)
    runtime: ServingRuntime = app.extensions["textclf"]
    return FlaskASGI(
        app,
        max_body_bytes=settings.predict_max_body_bytes,
        on_startup=[runtime.start],
        on_shutdown=[runtime.aclose],
    )
