"""The Open Inference Protocol's REST routes (/v2) on web, behind web's tokens and rate limits.

Every /v2 route needs a valid bearer token (any role: reader is enough) and counts against the
caller's rate limits: inference against `predict`, the rest against `reads`. A request is
checked here (the protocol's structure, then the native predict's rules for texts) and forwarded
through the shared algorithm client to the algorithm service's own /v2 routes. One text asking
only for `label` from the champion takes the native predict's path instead, coalesced with
concurrent single-text predictions into one call. Any model name is passed on (the algorithm
service knows which exist: 404 otherwise); a token limited to some names gets 403 for the
others, as on the native predict. Errors answer in the protocol's shape,
`{"error": "<message>", "code": "<our code>"}`, with the status and headers of web's own errors.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core import inference_protocol as oip
from web.auth.check import token_cache
from web.auth.middleware import admit, bearer_secret
from web.auth.scope import require_model
from web.edge.rate_limits import refusal
from web.errors import MethodNotAllowed, PayloadTooLarge, ServiceError
from web.proxy.algorithm_client import AlgorithmAnswer, get_client
from web.proxy.body import parse_predict_body

Passed = tuple[Any, int, dict[str, str]]  # a body, its status and headers to send on
View = Callable[..., Awaitable[dict[str, Any] | tuple[Any, int] | Passed]]


def protocol_view(method: str, scope: str) -> Callable[[View], Callable[..., Any]]:
    """Accept `method` only, after the token and the rate limit of `scope`; a view returns a
    body (200), (body, status) or (body, status, headers); every error answers in the
    protocol's shape."""

    def decorate(view: View) -> Callable[..., Any]:
        @csrf_exempt
        async def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method != method and not (method == "GET" and request.method == "HEAD"):
                    raise MethodNotAllowed(str(request.method), request.path, allowed=(method,))
                admit(request, None, await token_cache.alookup(bearer_secret(request)))
                refused = await refusal(request, scope)
                if refused is not None:
                    raise refused
                result = await view(request, *args, **kwargs)
            except ServiceError as error:
                return _error_response(
                    oip.error_body(error.detail, error.code), error.status, error.headers
                )
            except oip.ProtocolError as error:
                return _error_response(oip.error_body(error.message, error.code), error.status, {})
            body, status, *headers = result if isinstance(result, tuple) else (result, 200)
            return (
                _error_response(body, status, headers[0])
                if headers
                else JsonResponse(body, status=status)
            )

        answer.__name__ = view.__name__
        return answer

    return decorate


def _error_response(body: dict[str, str], status: int, headers: dict[str, str]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@protocol_view("GET", "reads")
async def server_metadata(request: HttpRequest) -> dict[str, Any]:
    return oip.server_metadata()


@protocol_view("GET", "reads")
async def server_live(request: HttpRequest) -> dict[str, Any]:
    return {"live": True}


@protocol_view("GET", "reads")
async def server_ready(request: HttpRequest) -> Passed:
    """Ready when the algorithm service is: it serves a model."""
    answer = await get_client().call("GET", "/v2/health/ready")
    return _passed_on(answer)


@protocol_view("GET", "reads")
async def model_metadata(request: HttpRequest, name: str, version: str | None = None) -> Passed:
    require_model(request, name)
    return _passed_on(await get_client().call("GET", _model_path(name, version)))


@protocol_view("GET", "reads")
async def model_ready(request: HttpRequest, name: str, version: str | None = None) -> Passed:
    require_model(request, name)
    return _passed_on(await get_client().call("GET", _model_path(name, version) + "/ready"))


@protocol_view("POST", "predict")
async def infer(
    request: HttpRequest, name: str, version: str | None = None
) -> tuple[Any, int] | Passed:
    """Label the texts of a BYTES input; one text for `label` only shares the native path."""
    require_model(request, name)
    if request.headers.get(oip.BINARY_HEADER) is not None:
        raise oip.ProtocolError(
            "binary tensor data is not supported: send JSON data (binary_data=False)",
            code="unsupported_media_type",
        )
    body = _read_object(request)
    call = oip.parse_infer_request(body)
    parse_predict_body({"texts": call.texts})  # the native predict's rules and limits for texts
    client = get_client()
    if (
        name == oip.MODEL_NAME
        and version in (None, "champion")
        and call.labels_only
        and len(call.texts) == 1
    ):
        answer = await client.predict_one(call.texts[0])
        if answer.status != 200:
            return _passed_on(answer)
        label, served = answer.body["label"], answer.body["model_version"]
        return oip.infer_response(call, version=served, labels=[label]), 200
    return _passed_on(await client.call("POST", _model_path(name, version) + "/infer", json=body))


def _model_path(name: str, version: str | None) -> str:
    # The URL conf lets only [A-Za-z0-9_.-] through: nothing here can change the path's meaning.
    return f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "")


def _read_object(request: HttpRequest) -> dict[str, Any]:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge("The body is larger than this server accepts.") from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise oip.ProtocolError("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise oip.ProtocolError("the body must be a JSON object (an inference request)")
    return body


def _passed_on(answer: AlgorithmAnswer) -> Passed:
    """The algorithm service's answer; a native-shaped error (e.g. `no_model` from the native
    path) in the protocol's shape, with its Retry-After (e.g. `model_loading`)."""
    body, headers = answer.body, {}
    if answer.status >= 400 and isinstance(body, dict) and "detail" in body:
        body = oip.error_body(str(body["detail"]), str(body.get("error")))
    if answer.status >= 400 and "Retry-After" in answer.headers:
        headers["Retry-After"] = answer.headers["Retry-After"]
    return body, answer.status, headers
