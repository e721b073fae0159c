"""The Open Inference Protocol's REST routes (/v2) on the algorithm service.

Inference goes through the same runtime as POST /predict: the champion's micro-batcher, its model
snapshot (so the answer names the version that produced it), shadow scoring and the predict
limits. A version in the path may be concrete or an alias; this process answers the versions it
holds in memory, the champion and (with shadow scoring on) the challenger, and a 404 in the
protocol's shape for any other (`previous` included): loading a version on request would put a
model load on the request path. Errors answer `{"error": "<message>", "code": "<our code>"}`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from algorithm.service.batcher import MicroBatcher, Prediction
from algorithm.service.errors import ApiError, NoModel
from algorithm.service.model_cache import ServingModel
from algorithm.service.runtime import ServingRuntime
from algorithm.service.schemas import PredictRequest
from core import inference_protocol as oip

inference_protocol = Blueprint("v2", __name__, url_prefix="/v2")
MODEL = "/models/<name>"
VERSION = "/models/<name>/versions/<version>"


class ModelNotFound(ApiError):
    status = 404
    code = "model_not_found"


class VersionNotLoaded(ModelNotFound):
    code = "version_not_loaded"


def runtime() -> ServingRuntime:
    served: ServingRuntime = current_app.extensions["textclf"]
    return served


def install(app: Flask) -> None:
    """Register the /v2 routes; the challenger gets a batcher of its own (max_size 1: every call
    is computed at once, so it owns no background task to stop)."""
    models = app.extensions["textclf"].models
    app.extensions["v2_challenger"] = MicroBatcher(
        lambda: models.challenger, max_size=1, max_wait=0
    )
    app.register_blueprint(inference_protocol)


@inference_protocol.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    response = jsonify(oip.error_body(exc.detail, exc.code))
    response.headers.update(exc.headers)
    return response, exc.status


@inference_protocol.errorhandler(oip.ProtocolError)
def _protocol_error(exc: oip.ProtocolError) -> tuple[Response, int]:
    return jsonify(oip.error_body(exc.message, exc.code)), exc.status


@inference_protocol.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    return jsonify(oip.error_body(exc.description or exc.name, code)), exc.code or 500


@inference_protocol.get("")
async def server_metadata() -> Response:
    return jsonify(oip.server_metadata())


@inference_protocol.get("/health/live")
async def server_live() -> Response:
    return jsonify(live=True)


@inference_protocol.get("/health/ready")
async def server_ready() -> tuple[Response, int]:
    """Ready when a model is served (the protocol's readiness: inference would succeed)."""
    ready = await _champion() is not None
    return jsonify(ready=ready), 200 if ready else 503


@inference_protocol.get(MODEL)
@inference_protocol.get(VERSION)
async def model_metadata(name: str, version: str | None = None) -> Response:
    model = await _resolve(name, version)
    versions = [model.version] if version is not None else _served_versions()
    return jsonify(oip.model_metadata(versions=versions, label_count=model.label_count))


@inference_protocol.get(MODEL + "/ready")
@inference_protocol.get(VERSION + "/ready")
async def model_ready(name: str, version: str | None = None) -> Response:
    model = await _resolve(name, version)
    return jsonify(name=oip.MODEL_NAME, version=model.version, ready=True)


@inference_protocol.post(MODEL + "/infer")
@inference_protocol.post(VERSION + "/infer")
async def infer(name: str, version: str | None = None) -> Response:
    """Label the texts of a BYTES input with the champion (or the challenger) in one batch."""
    if request.headers.get(oip.BINARY_HEADER) is not None:
        raise oip.ProtocolError(
            "binary tensor data is not supported: send JSON data (binary_data=False)",
            code="unsupported_media_type",
        )
    call = oip.parse_infer_request(request.get_data(cache=False))
    _check_texts(call.texts)
    model = await _resolve(name, version)
    top_k = (call.classification or model.label_count) if call.want_scores else None
    if top_k is not None and top_k > model.label_count:
        raise oip.ProtocolError(
            f"classification must be at most {model.label_count}, the labels of model "
            f"version {model.version}",
            code="validation_error",
        )
    if model is runtime().models.challenger and model is not runtime().models.current:
        batcher: MicroBatcher = current_app.extensions["v2_challenger"]
        prediction = await batcher.predict(call.texts, top_k)
    else:
        prediction = await runtime().predict(call.texts, top_k)
    if version not in (None, "champion") and prediction.version != model.version:
        raise _not_loaded(version)  # swapped out while the batch waited
    return jsonify(_answer(call, prediction))


def _answer(call: oip.InferenceCall, prediction: Prediction) -> dict[str, Any]:
    ranked = prediction.scores
    classes = None
    if ranked is not None:
        snapshot = _loaded(prediction.version)
        if snapshot is None:
            raise _not_loaded(prediction.version)
        classes = [str(label) for label in snapshot.predictor.model.classifier.classes_]
    return oip.infer_response(
        call, version=prediction.version, labels=prediction.labels, ranked=ranked, classes=classes
    )


def _check_texts(texts: list[str]) -> None:
    """The native predict's rules and limits for texts (PREDICT_MAX_TEXTS, PREDICT_MAX_CHARS)."""
    settings = runtime().settings
    limits = {"max_texts": settings.predict_max_texts, "max_chars": settings.predict_max_chars}
    try:
        PredictRequest.model_validate({"texts": texts}, context=limits)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]["msg"]
        message = f"input {oip.INPUT_NAME!r}: {problem.removeprefix('Value error, ')}"
        raise oip.ProtocolError(message, code="validation_error") from None


async def _champion() -> ServingModel | None:
    """The served champion; with none yet, look for one first (as predict does)."""
    rt = runtime()
    if rt.models.current is None:
        await rt.follower.ensure_model(rt.settings.model_check_ms / 1000)
    return rt.models.current


async def _resolve(name: str, version: str | None) -> ServingModel:
    """The loaded model `version` (a version or an alias; None: the champion) names."""
    if name != oip.MODEL_NAME:
        raise ModelNotFound(f"no model {name!r}: this service serves {oip.MODEL_NAME!r}")
    champion = await _champion()
    if champion is None:
        raise NoModel()
    if version in (None, "champion"):
        return champion
    model = runtime().models.challenger if version == "challenger" else _loaded(version)
    if model is None:
        raise _not_loaded(version)
    return model


def _loaded(version: str) -> ServingModel | None:
    models = runtime().models
    for model in (models.current, models.challenger):
        if model is not None and model.version == version:
            return model
    return None


def _served_versions() -> list[str]:
    models = runtime().models
    return [v for v in dict.fromkeys((models.version, models.challenger_version)) if v]


def _not_loaded(version: str | None) -> VersionNotLoaded:
    served = ", ".join(_served_versions()) or "none"
    return VersionNotLoaded(
        f"model {oip.MODEL_NAME!r} version {version!r} is not loaded by this service, which "
        f"serves the champion and, with shadow scoring on, the challenger (now: {served})"
    )
