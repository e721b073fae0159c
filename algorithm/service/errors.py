"""The algorithm service's errors; `app.register_error_handlers` maps them all to HTTP.

ApiError                    {"error": code, "detail": text} with an HTTP status
├── BadRequest              400: the body is not what the endpoint takes
├── Unauthorized            401: no service token, or not an accepted one (+ WWW-Authenticate)
├── NoModel                 503: nothing trained (or published) yet
├── ModelLoading            503: the registry's champion is not served here yet (startup probe,
│                                or a named model still loading after MODEL_LOAD_WAIT_SECONDS)
├── ModelNotFound           404: no model of that name (no desired state in Redis)
├── JobNotFound             404
└── BrokerUnavailable       503: Redis (the queue) does not answer

The ML library (algorithm/ml/) raises its own domain errors; the service maps them to these.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal_error"
    default_detail = "The server failed to handle this request."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)
        self.extra = extra
        self.headers: dict[str, str] = {}

    def with_status(self, status: int) -> ApiError:
        """The same error answered with another HTTP status."""
        self.status = status
        return self

    def retry_after(self, seconds: int) -> ApiError:
        """The same error, telling the caller when to try again."""
        self.headers["Retry-After"] = str(seconds)
        return self


class BadRequest(ApiError):
    status = 400
    code = "invalid_request"
    default_detail = "The request is not what this endpoint takes."

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if code:
            self.code = code


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    default_detail = (
        "This service answers only the web service and operators: send "
        "`Authorization: Bearer <service token>` (one of ALGORITHM_TOKENS)."
    )

    def __init__(self, detail: str | None = None, *, invalid: bool = False) -> None:
        super().__init__(detail)
        # RFC 6750: say which scheme to use, and whether the token sent was refused.
        challenge = 'Bearer realm="textclf-algorithm"'
        self.headers = {
            "WWW-Authenticate": f'{challenge}, error="invalid_token"' if invalid else challenge
        }


class NoModel(ApiError):
    status = 503
    code = "no_model"
    default_detail = (
        "No model has been trained yet: add labelled rows and start training "
        "with POST /train (or POST /api/train/ on the web service) first."
    )


class ModelLoading(ApiError):
    status = 503
    code = "model_loading"
    default_detail = "This process does not serve the registry's champion yet."


class ModelNotFound(ApiError):
    status = 404
    code = "model_not_found"


class JobNotFound(ApiError):
    status = 404
    code = "job_not_found"


class BrokerUnavailable(ApiError):
    status = 503
    code = "broker_unavailable"
