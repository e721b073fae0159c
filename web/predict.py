"""/api/train/ and /api/predict/: async views that forward to the algorithm service.

They validate at the edge (same limits as the algorithm service), forward through the shared
algorithm client, and pass the service's answers through, errors included, in the error shape.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from web.algorithm_client import AlgorithmAnswer, AlgorithmError, get_client
from web.errors import error_body

View = Callable[..., Awaitable[JsonResponse]]
# JSON may escape lone surrogates ("\\ud800"); they are not text and cannot be encoded onwards.
SURROGATE = re.compile("[\ud800-\udfff]")


class PredictInputError(ValueError):
    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items()))
        self.fields = fields


def _text_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "Must be a string."
    if not value.strip():
        return "Must not be empty or blank."
    if len(value) > settings.TEXT_MAX_CHARS:
        return f"At most {settings.TEXT_MAX_CHARS} characters, got {len(value)}."
    if SURROGATE.search(value):
        return "Surrogate characters are not allowed."
    return None


def parse_predict_body(body: Any) -> str | list[str]:
    """The text, or the list of texts, of a predict body; PredictInputError names what is wrong.

    Hand-written rather than a DRF serializer: it runs on every prediction, and a serializer
    costs more than the rest of the view.
    """
    if not isinstance(body, dict):
        raise PredictInputError({"body": ['Expected a JSON object with "text" or "texts".']})
    unknown = sorted(set(body) - {"text", "texts"})
    if unknown:
        raise PredictInputError({name: ["Unknown field."] for name in unknown})
    if ("text" in body) == ("texts" in body):
        raise PredictInputError({"text": ['Send exactly one of "text" or "texts".']})
    if "text" in body:
        problem = _text_problem(body["text"])
        if problem:
            raise PredictInputError({"text": [problem]})
        return str(body["text"])
    texts = body["texts"]
    if not isinstance(texts, list) or not texts:
        raise PredictInputError({"texts": ["Must be a non-empty list of strings."]})
    if len(texts) > settings.PREDICT_MAX_TEXTS:
        limit = settings.PREDICT_MAX_TEXTS
        raise PredictInputError({"texts": [f"At most {limit} texts, got {len(texts)}."]})
    problems = [f"item {i}: {p}" for i, t in enumerate(texts) if (p := _text_problem(t))]
    if problems:
        raise PredictInputError({"texts": problems[:20]})
    return texts


def _error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse(error_body(code, detail, **extra), status=status)


def _forward(answer: AlgorithmAnswer, **headers: str) -> JsonResponse:
    response = JsonResponse(answer.body, status=answer.status, safe=False)
    for name, value in headers.items():
        response[name] = value
    return response


def _unavailable(exc: AlgorithmError) -> JsonResponse:
    return _error(exc.status, exc.code, str(exc))


def _parse_json(request: HttpRequest) -> Any:
    if request.content_type != "application/json":
        raise _BadBody(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        return json.loads(request.body)
    except ValueError:
        raise _BadBody(400, "invalid_json", "The body is not valid JSON.") from None


def allow_only(method: str) -> Callable[[View], View]:
    """Answer other methods with 405 in the error shape (Django's own answer is not JSON)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method != method:
                response = _error(405, "method_not_allowed", f"Use {method} on {request.path}.")
                response["Allow"] = method
                return response
            return await view(request, *args, **kwargs)

        return checked

    return decorate


class _BadBody(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.response = _error(status, code, detail)


@csrf_exempt
@allow_only("POST")
async def predict(request: HttpRequest) -> JsonResponse:
    """Label one text or a batch through the algorithm service."""
    try:
        body = _parse_json(request)
    except _BadBody as exc:
        return exc.response
    try:
        parsed = parse_predict_body(body)
    except PredictInputError as exc:
        return _error(400, "validation_error", str(exc), fields=exc.fields)
    client = get_client()
    try:
        if isinstance(parsed, str):
            answer = await client.predict_one(parsed)
        else:
            answer = await client.call("POST", "/predict", json={"texts": parsed})
    except AlgorithmError as exc:
        return _unavailable(exc)
    return _forward(answer)


@csrf_exempt
@allow_only("POST")
async def start_training(request: HttpRequest) -> JsonResponse:
    """Start training (or join the queued job); 202 with the job and its Location."""
    if request.body.strip() not in (b"", b"{}"):
        return _error(400, "invalid_request", "POST /api/train/ takes no input; send no body.")
    try:
        answer = await get_client().call("POST", "/train")
    except AlgorithmError as exc:
        return _unavailable(exc)
    if answer.status != 202:
        return _forward(answer)
    return _forward(answer, Location=f"/api/train/{answer.body['job_id']}/")


@allow_only("GET")
async def training_job(request: HttpRequest, job_id: str) -> JsonResponse:
    """The state of one training job."""
    try:
        answer = await get_client().call("GET", f"/train/{job_id}")
    except AlgorithmError as exc:
        return _unavailable(exc)
    return _forward(answer)
