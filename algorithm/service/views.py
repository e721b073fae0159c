"""HTTP endpoints of the algorithm service: thin async views over the runtime."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Literal
from urllib.parse import unquote

import redis
from flask import Blueprint, Request, Response, current_app, jsonify, request

from algorithm.service.errors import (
    BadRequest,
    BrokerUnavailable,
    JobNotFound,
    ModelLoading,
    ModelNotFound,
)
from algorithm.service.event_loop import request_body, request_context, serving_alone
from algorithm.service.runtime import ServingRuntime
from algorithm.service.schemas import (
    Liveness,
    Readiness,
    ServedModelState,
    Started,
    parse_predict_request,
    parse_train_request,
)
from core import serving_protocol
from core.jobs import REQUESTED_BY_HEADER, REQUESTED_BY_MAX_CHARS, Requester
from core.logs import REQUEST_ID
from core.model_names import DEFAULT_MODEL

api = Blueprint("api", __name__)
# Who asked web for a training (the header and its limit: core/jobs.py). Only service-token
# holders reach /train (algorithm/service/auth.py), so the value is the caller's word, recorded
# as given.
REQUESTED_BY_PATTERN = re.compile(rf"[!-~]{{1,{REQUESTED_BY_MAX_CHARS}}}")
# Bodies above this size are parsed in the large-batch thread (~1 ms of work here).
LARGE_BODY_BYTES = 1 << 20


def runtime() -> ServingRuntime:
    runtime: ServingRuntime = current_app.extensions["textclf"]
    return runtime


def require_json(current: Request) -> bytes:
    """The body; 415 unless it is JSON (the header every client sends is taken as is)."""
    content_type = current.environ.get("CONTENT_TYPE")
    if content_type != "application/json" and current.mimetype != "application/json":
        raise BadRequest(
            f"Send the body as application/json, not {current.mimetype or 'nothing'}.",
            code="unsupported_media_type",
        ).with_status(415)
    return request_body(current)


@api.post("/predict")
async def predict() -> Response | tuple[Response, int]:
    """Label one text or a batch, with the model version (and with `top_k`, the scores)."""
    context = request_context()  # one look through Flask's context, not five
    rt: ServingRuntime = context.app.extensions["textclf"]
    current = context.request
    raw = require_json(current)
    if len(raw) > LARGE_BODY_BYTES:
        # Parsing megabytes would hold the loop for tens of ms: the large-batch thread does it.
        body = await rt.batcher.off_loop(
            functools.partial(parse_predict_request, raw, limits=rt.settings)
        )
    else:
        body = parse_predict_request(raw, limits=rt.settings)
    texts = [body.text] if body.text is not None else body.texts or []
    # NoModel: 503 until trained; a top_k above the model's label count: 400.
    alone = serving_alone(current)
    labels, version, scores = await rt.predict(texts, body.top_k, body.model, alone=alone)
    if scores is None:
        if body.text is not None:
            return json_response({"label": labels[0], "model_version": version})
        return json_response({"labels": labels, "model_version": version})
    ranked = [[{"label": label, "score": score} for label, score in best] for best in scores]
    if body.text is not None:
        return json_response({"label": labels[0], "model_version": version, "scores": ranked[0]})
    return json_response({"labels": labels, "model_version": version, "scores": ranked})


# `jsonify`'s bytes (compact, ASCII, keys in order, a final newline) from one encoder made once:
# jsonify builds a new encoder for every answer.
_encode_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
JSON_CONTENT_TYPE = "application/json"


def json_response(answer: dict[str, object]) -> Response:
    """A JSON answer of plain values (strings, numbers, lists, dicts), as `jsonify` writes it."""
    # ASCII already (ensure_ascii): encoded here, and the content type given whole (a mimetype
    # would be looked up for a charset on every answer).
    return Response((_encode_json(answer) + "\n").encode("ascii"), content_type=JSON_CONTENT_TYPE)


@api.post("/train")
async def train() -> tuple[Response, int, dict[str, str]]:
    """Queue a training job of a model (or return the one already queued)."""
    body = request.get_data(cache=False)
    if body.strip() and request.mimetype != "application/json":
        raise BadRequest(
            f"Send the body as application/json, not {request.mimetype or 'nothing'}.",
            code="unsupported_media_type",
        ).with_status(415)
    model = parse_train_request(body).model
    requester = Requester(requested_by=requested_by(), request_id=REQUEST_ID.get())
    rt = runtime()
    try:
        job = await asyncio.to_thread(_request_training, rt, model, requester)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"The job queue is not reachable: {exc}") from exc
    return jsonify(job), 202, {"Location": f"/train/{job['job_id']}"}


def _request_training(rt: ServingRuntime, model: str, requester: Requester) -> dict[str, object]:
    """The job training `model` (404 for a name the registry has not announced)."""
    if model != DEFAULT_MODEL and serving_protocol.read_desired(rt.redis, model) is None:
        raise ModelNotFound(f"No model named {model!r}.")
    return rt.job_store.request_training(
        enqueue=lambda job_id: rt.enqueue_training(job_id, model),
        requester=requester,
        model=model,
    )


def requested_by() -> str | None:
    """The decoded `X-Requested-By` header, or None; 400 unless it is what the schema says."""
    raw = request.headers.get(REQUESTED_BY_HEADER)
    if raw is None:
        return None
    if not REQUESTED_BY_PATTERN.fullmatch(raw):
        raise BadRequest(
            f"{REQUESTED_BY_HEADER} must be the requester's name percent-encoded as UTF-8: "
            f"1 to {REQUESTED_BY_MAX_CHARS} visible ASCII characters."
        )
    name = unquote(raw, errors="replace")  # every value the schema allows is accepted
    return "".join(char if char.isprintable() else "\ufffd" for char in name)


@api.get("/train/<job_id>")
async def train_status(job_id: str) -> Response:
    """The state of one training job."""
    try:
        job = await asyncio.to_thread(runtime().job_store.get, job_id)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"The job store is not reachable: {exc}") from exc
    if job is None:
        raise JobNotFound(f"No training job {job_id!r}.")
    return jsonify(job)


@api.get("/health/live")
async def live() -> Response:
    return jsonify(Liveness(status="ok").model_dump())


@api.get("/health/started")
async def started() -> Response:
    """Started once this process serves the registry's champion (or none is announced yet).

    A startup probe: a new replica takes traffic only after its first verified load; a model
    that cannot be had shows as 503 `model_loading` here and as the replica's load error.
    """
    models = runtime().models
    if not models.started:
        serving = models.version or "no model"
        raise ModelLoading(
            f"This process serves {serving}; the registry's champion "
            f"{models.desired_champion} is not loaded yet."
        )
    return jsonify(Started(status="ok", model_version=models.version).model_dump())


@api.get("/health/ready")
async def ready() -> tuple[Response, int]:
    """Ready when Redis answers; says which model version is loaded.

    Anyone may ask, so the answer holds no internals: no exception text, no file path (the
    log has them, and the registry's alias list shows each replica's load error to its users).
    """
    rt = runtime()
    redis_state: Literal["ok", "unavailable"] = "ok"
    try:
        await asyncio.to_thread(rt.redis.ping)
    except (redis.RedisError, OSError):
        redis_state = "unavailable"
    failed = rt.models.error_version if rt.models.last_error else None
    body = Readiness(
        status="ok" if redis_state == "ok" else "unavailable",
        checks={"redis": redis_state},
        model_version=rt.models.version,
        model_error=f"version {failed} could not be loaded (see the log)" if failed else None,
        models={
            name: ServedModelState(
                version=served.cache.version,
                memory_bytes=served.cache.memory_bytes,
                pinned=served.pinned,
            )
            for name, served in rt.pool.served.items()
        },
    )
    return jsonify(body.model_dump()), 200 if redis_state == "ok" else 503
