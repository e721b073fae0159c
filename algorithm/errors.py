"""The algorithm service's errors, mapped to HTTP in one place (`register_error_handlers`).

ApiError                    {"error": code, "detail": text} with an HTTP status
├── BadRequest              400: the body is not what the endpoint takes
├── NoModel                 503: nothing trained yet
├── JobNotFound             404
└── BrokerUnavailable       503: Redis (the queue) does not answer
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def with_status(self, status: int) -> ApiError:
        """The same error answered with another HTTP status."""
        self.status = status
        return self


class BadRequest(ApiError):
    status = 400
    code = "invalid_request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if code:
            self.code = code


class NoModel(ApiError):
    status = 503
    code = "no_model"


class JobNotFound(ApiError):
    status = 404
    code = "job_not_found"


class BrokerUnavailable(ApiError):
    status = 503
    code = "broker_unavailable"


def error_response(status: int, code: str, detail: str, **extra: Any) -> tuple[Response, int]:
    """The one error shape."""
    return jsonify({"error": code, "detail": detail, **extra}), status


def register_error_handlers(app: Flask) -> None:
    """Every error, ours or Werkzeug's, answers in the error shape; never an HTML page."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.detail, **exc.extra)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "The server failed to handle this request.")
