"""The Open Inference Protocol's REST routes (/v2) on the algorithm service.

Inference goes through the same runtime as POST /predict: the named model's micro-batcher, its
model snapshot (so the answer names the version that produced it), shadow scoring and the predict
limits. `{name}` is any model name the registry announced (a cold one is loaded as predict loads
it; an unknown one is 404 `model_not_found`). A version in the path may be concrete or an alias;
this process answers the versions it holds in memory, the champion and (with shadow scoring on)
the challenger, and a 404 in the protocol's shape for any other (`previous` included): loading a
version on request would put a model load on the request path. Errors answer
`{"error": "<message>", "code": "<our code>"}`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from algorithm.service.batcher import Prediction
from algorithm.service.errors import ApiError, ModelNotFound, NoModel
from algorithm.service.event_loop import request_body
from algorithm.service.model_cache import ServingModel
from algorithm.service.runtime import ServingRuntime
from algorithm.service.schemas import PredictRequest
from algorithm.service.served_model import ServedModel
from core import inference_protocol as oip
from core.model_names import DEFAULT_MODEL, is_model_name

inference_protocol = Blueprint("v2", __name__, url_prefix="/v2")
MODEL = "/models/<name>"
VERSION = "/models/<name>/versions/<version>"


class VersionNotLoaded(ModelNotFound):
    code = "version_not_loaded"


def runtime() -> ServingRuntime:
    served: ServingRuntime = current_app.extensions["textclf"]
    return served


def install(app: Flask) -> None:
    """Register the /v2 routes (each model's challenger has a batcher of its own: model_pool)."""
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
    served, model = await _resolve(name, version)
    versions = [model.version] if version is not None else _served_versions(served)
    metadata = oip.model_metadata(versions=versions, label_count=model.label_count)
    return jsonify({**metadata, "name": name})


@inference_protocol.get(MODEL + "/ready")
@inference_protocol.get(VERSION + "/ready")
async def model_ready(name: str, version: str | None = None) -> Response:
    _, model = await _resolve(name, version)
    return jsonify(name=name, version=model.version, ready=True)


@inference_protocol.post(MODEL + "/infer")
@inference_protocol.post(VERSION + "/infer")
async def infer(name: str, version: str | None = None) -> Response:
    """Label the texts of a BYTES input with the champion (or the challenger) in one batch."""
    if request.headers.get(oip.BINARY_HEADER) is not None:
        raise oip.ProtocolError(
            "binary tensor data is not supported: send JSON data (binary_data=False)",
            code="unsupported_media_type",
        )
    call = oip.parse_infer_request(request_body())
    _check_texts(call.texts)
    served, model = await _resolve(name, version)
    top_k = (call.classification or model.label_count) if call.want_scores else None
    if top_k is not None and top_k > model.label_count:
        raise oip.ProtocolError(
            f"classification must be at most {model.label_count}, the labels of model "
            f"version {model.version}",
            code="validation_error",
        )
    if model is served.cache.challenger and model is not served.cache.current:
        prediction = await served.challenger_batcher.predict(call.texts, top_k)
    else:
        prediction = await runtime().predict(call.texts, top_k, name)
    if version not in (None, "champion") and prediction.version != model.version:
        raise _not_loaded(served, version)  # swapped out while the batch waited
    return jsonify(_answer(call, prediction, served))


def _answer(call: oip.InferenceCall, prediction: Prediction, served: ServedModel) -> dict[str, Any]:
    ranked = prediction.scores
    classes = None
    if ranked is not None:
        snapshot = _loaded(served, prediction.version)
        if snapshot is None:
            raise _not_loaded(served, prediction.version)
        classes = [str(label) for label in snapshot.predictor.model.classifier.classes_]
    answer = oip.infer_response(
        call, version=prediction.version, labels=prediction.labels, ranked=ranked, classes=classes
    )
    answer["model_name"] = served.name
    return answer


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


async def _resolve(name: str, version: str | None) -> tuple[ServedModel, ServingModel]:
    """The model `name` and its loaded version `version` (a version or an alias; None: the
    champion)."""
    if not is_model_name(name):
        raise ModelNotFound(f"no model {name!r}: a model name is a slug, e.g. {DEFAULT_MODEL!r}")
    rt = runtime()
    if name == DEFAULT_MODEL:
        served = rt.pool.served[DEFAULT_MODEL]
        champion = await _champion()
    else:
        served = rt.pool.served.get(name) or await rt.pool.acquire(name)
        champion = served.cache.current
    if champion is None:
        raise NoModel()
    if version in (None, "champion"):
        return served, champion
    model = served.cache.challenger if version == "challenger" else _loaded(served, version)
    if model is None:
        raise _not_loaded(served, version)
    return served, model


def _loaded(served: ServedModel, version: str) -> ServingModel | None:
    for model in (served.cache.current, served.cache.challenger):
        if model is not None and model.version == version:
            return model
    return None


def _served_versions(served: ServedModel) -> list[str]:
    models = served.cache
    return [v for v in dict.fromkeys((models.version, models.challenger_version)) if v]


def _not_loaded(served: ServedModel, version: str | None) -> VersionNotLoaded:
    versions = ", ".join(_served_versions(served)) or "none"
    return VersionNotLoaded(
        f"model {served.name!r} version {version!r} is not loaded by this service, which "
        f"serves the champion and, with shadow scoring on, the challenger (now: {versions})"
    )
