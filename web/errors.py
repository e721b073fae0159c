"""The web service's errors and the one place that turns them into an HTTP answer.

    ServiceError                    500 internal_error
    ├── BadRequest                  400 bad_request
    │   ├── InvalidJson             400 invalid_json
    │   ├── InvalidRequest          400 invalid_request
    │   └── ValidationFailed        400 validation_error (+ fields or items)
    ├── Unauthorized                401 not_authenticated (+ WWW-Authenticate)
    │   └── InvalidToken            401 invalid_token
    ├── Forbidden                   403 forbidden
    ├── NotFound                    404 not_found
    ├── MethodNotAllowed            405 method_not_allowed (+ Allow header)
    ├── Conflict                    409 conflict
    ├── TopKAboveLabels             409 top_k_above_labels (+ fields)
    ├── GateFailed                  422 gate_failed (+ report)
    ├── PayloadTooLarge             413 payload_too_large
    ├── UnsupportedMediaType        415 unsupported_media_type
    ├── TooManyRequests             429 rate_limited (+ Retry-After)
    ├── RateLimitUnavailable        503 rate_limit_unavailable (+ Retry-After)
    ├── DatabaseUnavailable         503 database_unavailable (+ Retry-After)
    ├── AlgorithmUnavailable        503 algorithm_unavailable
    └── AlgorithmTimeout            504 algorithm_unavailable

`error_response` is that one place. The async views reach it through `json_errors`, DRF views
through `api_exception_handler` (which first translates DRF's own exceptions, keeping their
status and code), and Django's unknown URLs and crashes through the handler views below.
`as_service_error` is the one translation of foreign exceptions they all share: a database that
cannot be reached (restarting, connections cut) is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from django import db as django_db
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout
from rest_framework import exceptions
from rest_framework.views import set_rollback


class ServiceError(Exception):
    """Base of every error web answers; `status` and `code` say how it is answered."""

    status = 500
    code = "internal_error"
    default_detail = "The server failed to handle this request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)
        self.headers = headers or {}
        self.extra = extra  # more fields of the body: `fields`, `items`

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(ServiceError):
    status, code, default_detail = 400, "bad_request", "The request is malformed."


class InvalidJson(BadRequest):
    code, default_detail = "invalid_json", "The body is not valid JSON."


class InvalidRequest(BadRequest):
    code = "invalid_request"


class ValidationFailed(BadRequest):
    code, default_detail = "validation_error", "Some fields are invalid."


class Unauthorized(ServiceError):
    """No bearer token; the challenge says how to authenticate (RFC 6750)."""

    status, code = 401, "not_authenticated"
    default_detail = "This endpoint needs a token: send `Authorization: Bearer <token>`."
    challenge = 'Bearer realm="api"'

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": self.challenge})


class InvalidToken(Unauthorized):
    code = "invalid_token"
    default_detail = "The token is unknown, expired or revoked."
    challenge = 'Bearer realm="api", error="invalid_token"'


class Forbidden(ServiceError):
    status, code, default_detail = 403, "forbidden", "Your role does not allow this."


class Conflict(ServiceError):
    """The resource is not in the state the request assumes (e.g. `expected_version`)."""

    status, code = 409, "conflict"


class GateFailed(ServiceError):
    """A champion move the promotion gate refuses; the body carries the gate's `report`."""

    status, code = 422, "gate_failed"


class NotFound(ServiceError):
    status, code, default_detail = 404, "not_found", "No such resource."


class MethodNotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"

    def __init__(self, method: str, path: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"{method} is not allowed on {path}; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )


class TopKAboveLabels(ServiceError):
    """A valid top_k that the model served now cannot answer: it has fewer labels.

    409, not 400: the same body succeeds once a model with enough labels is served, and web's
    schema (unlike the algorithm service's) cannot state the served model's limit.
    """

    status, code = 409, "top_k_above_labels"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"
    default_detail = "Send the body as application/json."


class TooManyRequests(ServiceError):
    status, code = 429, "rate_limited"

    def __init__(self, scope: str, *, limit: int, retry_after: int) -> None:
        super().__init__(
            f"Too many {scope} requests: at most {limit} a minute per token (or address "
            f"without one). Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


class RateLimitUnavailable(ServiceError):
    """The limiter's Redis does not answer, on a scope that fails closed (train)."""

    status, code = 503, "rate_limit_unavailable"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(
            "Rate limits cannot be checked right now, and this request is not taken without "
            f"them. Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


class DatabaseUnavailable(ServiceError):
    """PostgreSQL cannot be reached (restarting, connections cut); nothing was changed."""

    status, code = 503, "database_unavailable"
    retry_after = 2  # seconds: about what a PostgreSQL restart or a crash recovery takes

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or f"The database is unavailable. Retry in {self.retry_after} s.",
            headers={"Retry-After": str(self.retry_after)},
        )


# Django wraps the driver's errors (django.db.*); the driver's own reach us from code that talks
# to psycopg directly (a connection pool's timeout is a psycopg.OperationalError too).
DATABASE_OUTAGES = (
    django_db.OperationalError,
    django_db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class QueryTimedOut(ServiceError):
    """PostgreSQL cancelled a statement that ran (or waited for a lock) past statement_timeout."""

    status, code = 503, "query_timeout"
    retry_after = 5

    def __init__(self) -> None:
        super().__init__(
            f"The database query took longer than {settings.STATEMENT_TIMEOUT_MS} ms and was "
            "cancelled; narrow the request (fewer or longer search terms) or retry later.",
            headers={"Retry-After": str(self.retry_after)},
        )


def as_service_error(exc: Exception) -> ServiceError | None:
    """The answer for `exc` when it is one we know how to answer; None for a real bug."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, DATABASE_OUTAGES):
        cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
        if isinstance(cause, psycopg.errors.QueryCanceled):
            return QueryTimedOut()
        if isinstance(cause, PoolTimeout):
            # No connection within WEB_DB_POOL_TIMEOUT_SECONDS: the server is unreachable (the
            # pool cannot open one) or every connection of this process is in use.
            return DatabaseUnavailable(
                "No database connection could be had in time (the database is unreachable or "
                f"busy). Retry in {DatabaseUnavailable.retry_after} s."
            )
        return DatabaseUnavailable()
    return None


class AlgorithmUnavailable(ServiceError):
    status, code = 503, "algorithm_unavailable"
    default_detail = "The algorithm service is unavailable."


class AlgorithmTimeout(AlgorithmUnavailable):
    status = 504
    default_detail = "The algorithm service did not answer in time."


def error_response(error: ServiceError) -> JsonResponse:
    """The error shape `{"error": code, "detail": text, ...}` with the error's status."""
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


View = Callable[..., Awaitable[HttpResponse]]


def json_errors(*methods: str) -> Callable[[View], View]:
    """For plain async views: accept only `methods`, answer ServiceErrors in the error shape."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise MethodNotAllowed(str(request.method), request.path, allowed=methods)
                return await view(request, *args, **kwargs)
            except Exception as exc:
                error = as_service_error(exc)
                if error is None:
                    raise
                return error_response(error)

        return answer

    return decorate


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> JsonResponse | None:
    """DRF's exception handler: every known exception answered through `error_response`."""
    if isinstance(exc, Http404):
        exc = NotFound("No such row." if context.get("kwargs") else str(exc))
    elif isinstance(exc, exceptions.APIException):
        exc = _from_drf(exc)
    error = as_service_error(exc)
    if error is None:
        return None  # a real bug: Django answers through handler500
    set_rollback()
    return error_response(error)


def _from_drf(exc: exceptions.APIException) -> ServiceError:
    if isinstance(exc, exceptions.ValidationError):
        return _validation_failed(exc.detail)
    if isinstance(exc, exceptions.ParseError):
        return InvalidJson(str(exc.detail))
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)
    if getattr(exc, "wait", None):
        headers["Retry-After"] = f"{exc.wait:.0f}"
    error = ServiceError(str(exc.detail), headers=headers)
    error.status, error.code = exc.status_code, str(exc.default_code)
    return error


def _validation_failed(detail: Any) -> ValidationFailed:
    if isinstance(detail, dict):
        non_field = detail.pop("non_field_errors", None)
        return ValidationFailed(str(non_field[0]) if non_field else None, fields=detail)
    if isinstance(detail, list):
        return ValidationFailed(" ".join(str(d) for d in detail))
    return ValidationFailed(str(detail))


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown URL (or a path parameter of the wrong type)."""
    return error_response(NotFound(f"No resource at {request.path}."))


def server_error_view(request: HttpRequest) -> JsonResponse:
    """An unexpected failure: no HTML, no traceback.

    Django calls it while handling the exception, so that exception is at hand: a database
    outage met by Django's own views (the admin's login looking its user up) is answered as the
    API answers it, 503 with Retry-After, not as a bug.
    """
    exc = sys.exception()
    known = as_service_error(exc) if isinstance(exc, Exception) else None
    return error_response(known or ServiceError())


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Requests Django itself rejects (bad Host header, malformed multipart)."""
    return error_response(BadRequest())
