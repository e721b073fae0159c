"""/api/train/ and /api/predict/: async views that forward to the algorithm service.

They validate at the edge (same limits as the algorithm service), forward through the shared
algorithm client, and pass the service's answers through, errors included, in the error shape.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers

from web.algorithm_client import AlgorithmAnswer, AlgorithmError, get_client
from web.data.serializers import RejectUnknownFieldsMixin, StrictCharField
from web.errors import error_body

View = Callable[..., Awaitable[JsonResponse]]


class PredictSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    text = StrictCharField(required=False, max_length=settings.TEXT_MAX_CHARS)
    texts = serializers.ListField(
        child=StrictCharField(max_length=settings.TEXT_MAX_CHARS),
        required=False,
        min_length=1,
        max_length=settings.PREDICT_MAX_TEXTS,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("text" in attrs) == ("texts" in attrs):
            raise serializers.ValidationError(
                {"text": ['Send exactly one of "text" (a string) or "texts" (a list).']}
            )
        return attrs


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
    if not isinstance(body, dict):
        return _error(400, "validation_error", 'Expected a JSON object with "text" or "texts".',
                      fields={"body": ["Expected a JSON object."]})  # fmt: skip
    serializer = PredictSerializer(data=body)
    if not serializer.is_valid():
        fields = {k: [str(m) for m in v] for k, v in serializer.errors.items()}
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items())
        return _error(400, "validation_error", detail, fields=fields)
    client = get_client()
    try:
        if "text" in serializer.validated_data:
            answer = await client.predict_one(serializer.validated_data["text"])
        else:
            answer = await client.call(
                "POST", "/predict", json={"texts": serializer.validated_data["texts"]}
            )
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
