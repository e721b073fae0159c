"""One JSON error shape for the whole web API: {"error": code, "detail": text, ...}.

DRF exceptions go through `api_exception_handler`; Django's own 404/500 (unknown URLs,
non-numeric ids, crashes) go through the `handler404`/`handler500` views below.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ServiceError(exceptions.APIException):
    """Base for errors this service raises itself; `code` becomes the `error` field."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail=detail, code=code or self.default_code)
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}


_CODES = {
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotFound: "not_found",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.ValidationError: "validation_error",
    exceptions.Throttled: "throttled",
}


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The error shape every endpoint uses."""
    return {"error": code, "detail": detail, **extra}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn every DRF-visible exception into the error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such row." if context.get("kwargs") else str(exc))
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django answers through handler500
    if isinstance(exc, ServiceError):
        code = str(exc.get_codes())
        body = error_body(code, str(exc.detail), **exc.extra)
    elif isinstance(exc, exceptions.ValidationError):
        body = _validation_body(exc.detail)
    else:
        code = next((c for t, c in _CODES.items() if isinstance(exc, t)), "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = error_body(code, str(detail))
    response.data = body
    return response


def _validation_body(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        non_field = detail.pop("non_field_errors", None)
        summary = str(non_field[0]) if non_field else "Some fields are invalid."
        return error_body("validation_error", summary, fields=detail)
    if isinstance(detail, list):
        return error_body("validation_error", " ".join(str(d) for d in detail))
    return error_body("validation_error", str(detail))


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown URL (or a path parameter of the wrong type)."""
    return JsonResponse(error_body("not_found", f"No resource at {request.path}."), status=404)


def server_error_view(request: HttpRequest) -> JsonResponse:
    """An unexpected failure: no HTML, no traceback."""
    return JsonResponse(
        error_body("internal_error", "The server failed to handle this request."), status=500
    )


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Requests Django itself rejects (bad Host header, malformed multipart)."""
    return JsonResponse(error_body("bad_request", "The request is malformed."), status=400)
