"""/api/train/ and /api/predict/: async views that forward to the algorithm service.

They validate at the edge (web/proxy/body.py, `training_model`), forward through the shared
algorithm client,
and pass the service's answers through, errors included. Single texts without `top_k` share
calls (see web/proxy/algorithm_client.py); with `top_k` a request makes its own call, and a k above
the
labels of the served model answers 409. Everything that goes wrong here is a
ServiceError, answered in the error shape by `json_errors`.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.model_names import DEFAULT_MODEL, InvalidModelName, check_model_name
from web.auth import scope
from web.auth.scope import require_model
from web.edge.json_parser import JsonTooDeep, load_json
from web.errors import (
    AlgorithmUnavailable,
    InvalidJson,
    InvalidRequest,
    PayloadTooLarge,
    TopKAboveLabels,
    UnsupportedMediaType,
    ValidationFailed,
    json_errors,
)
from web.proxy.algorithm_client import (
    AlgorithmAnswer,
    AlgorithmClient,
    get_client,
    requester_headers,
)
from web.proxy.body import PredictMany, PredictOne, parse_predict_body


@csrf_exempt
@json_errors("POST")
async def predict(request: HttpRequest) -> HttpResponse:
    """Label one text or a batch through the algorithm service, with the model it names.

    The token's names are checked here; whether the name exists, by the algorithm service (its
    404 `model_not_found` passed through): a prediction costs no database query.
    """
    body = parse_predict_body(_read_json(request))
    require_model(request, body.model)  # 403 for a name the token may not use
    client = get_client()
    if body.top_k:  # with scores: a call of its own (the algorithm service batches it)
        answer = await _predict_with_scores(client, body)
    elif isinstance(body, PredictOne):
        answer = await client.predict_one(body.text, body.model)
    else:
        named = {} if body.model == DEFAULT_MODEL else {"model": body.model}
        answer = await client.call("POST", "/predict", json={**named, "texts": body.texts})
    return _forward(answer)


async def _predict_with_scores(
    client: AlgorithmClient, body: PredictOne | PredictMany
) -> AlgorithmAnswer:
    """Forward the fields the body sent; a top_k above the served model's labels is a 409."""
    # `default` goes unnamed, as before names existed, whether or not the body named it.
    unnamed = {"model"} if body.model == DEFAULT_MODEL else set()
    sent = body.model_dump(exclude_unset=True, exclude=unnamed)
    answer = await client.call("POST", "/predict", json=sent)
    fields = answer.body.get("fields") if isinstance(answer.body, dict) else None
    if answer.status == 400 and isinstance(fields, dict) and "top_k" in fields:
        # The body passed our schema, so the only top_k the service refuses is one above the
        # labels of the model it serves now.
        raise TopKAboveLabels(answer.body["detail"], fields=fields)
    return answer


def training_model(request: HttpRequest) -> str:
    """The model a POST /api/train/ names (a 400 for a body it cannot take).

    No body (or `{}`) means `default`; `{"model": "<name>"}` names one. Any other field, or a
    body that is not a JSON object, is refused; a name that is not a slug is a field error.
    """
    raw = _read_body(request)
    if not raw.strip():
        return DEFAULT_MODEL
    try:
        body = load_json(raw)
    except JsonTooDeep as exc:
        raise InvalidJson(f"The body is not valid JSON here: {exc}.") from None
    except ValueError:
        raise InvalidJson() from None
    if not isinstance(body, dict) or set(body) - {"model"}:
        raise InvalidRequest('POST /api/train/ takes no body, or {"model": "<name>"} only.')
    if "model" not in body:
        return DEFAULT_MODEL
    try:
        return check_model_name(body["model"])
    except InvalidModelName as exc:
        raise ValidationFailed(fields={"model": [str(exc)]}) from None


@json_errors("POST")
async def start_training(request: HttpRequest, model: str = DEFAULT_MODEL) -> HttpResponse:
    """Start training `model` (or join its queued job); 202 with the job and its Location.

    `default` is asked for with no body, as before names existed; another name with
    `{"model": name}`. The caller checked the name (`training_model`, its scope, that it exists).
    """
    # Who asked (set by the token check) goes with the job to its run row in the registry.
    actor = getattr(request, "actor", None)
    body = None if model == DEFAULT_MODEL else {"model": model}
    answer = await get_client().call("POST", "/train", json=body, headers=requester_headers(actor))
    if answer.status != 202:
        return _forward(answer)
    job_id = answer.body.get("job_id") if isinstance(answer.body, dict) else None
    if not isinstance(job_id, str):
        raise AlgorithmUnavailable("The algorithm service accepted the training without a job id.")
    return _forward(answer, Location=f"/api/train/{job_id}/")


@json_errors("GET")
async def training_job(request: HttpRequest, job_id: str) -> HttpResponse:
    """The state of one training job, if it trains a model name the caller's token may use."""
    answer = await get_client().call("GET", f"/train/{job_id}")
    if answer.status == 200 and isinstance(answer.body, dict):
        scope.require_model(request, str(answer.body.get("model") or DEFAULT_MODEL))
    return _forward(answer)


def _read_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise PayloadTooLarge("The body is larger than this server accepts.") from None


def _read_json(request: HttpRequest) -> Any:
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        return load_json(_read_body(request))
    except JsonTooDeep as exc:
        raise InvalidJson(f"The body is not valid JSON here: {exc}.") from None
    except ValueError:
        raise InvalidJson() from None


def _forward(answer: AlgorithmAnswer, **headers: str) -> HttpResponse:
    """The algorithm service's answer as web's, status, error shape and Retry-After included."""
    # What JsonResponse would send (its encoder differs only for types JSON cannot carry), from
    # bytes the client may have made once for several requests.
    content = answer.content if answer.content is not None else json.dumps(answer.body).encode()
    response = HttpResponse(content, status=answer.status, content_type="application/json")
    if answer.status >= 400 and "Retry-After" in answer.headers:  # e.g. 503 model_loading
        response["Retry-After"] = answer.headers["Retry-After"]
    for name, value in headers.items():
        response[name] = value
    return response
