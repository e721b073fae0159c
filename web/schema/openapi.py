"""The parts of web's OpenAPI schema that drf-spectacular cannot see by itself.

Predict, train and health are plain async Django views (a DRF APIView would put every prediction
through a thread hop), so `add_plain_views` writes their operations into the generated schema,
with the predict request body taken from the pydantic models that validate it. Then every /api/
operation gets the `bearerAuth` security scheme and the answers authentication and rate limits
add (401, 403 where its role is above reader, 429), from the same table the middleware reads.
Serializers that refuse unknown fields say so (`additionalProperties: false`) through
`StrictSerializerExtension`.
tests/web/test_openapi.py checks the schema against the URL conf, so a route cannot go missing.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension

from core.request_body_openapi import BodyRefusals, declare_body_refusals
from web.auth.middleware import route_name
from web.auth.roles import PUBLIC_ROUTES, READER, required_role
from web.data import rules
from web.data.serializers import RuleCharField
from web.proxy.body import PredictMany, PredictOne
from web.schema import inference_protocol

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code, e.g. validation_error."},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Per-field messages, for validation errors.",
        },
    },
    "required": ["error", "detail"],
}

NULLABLE_STRING = {"type": "string", "nullable": True}
RANKED = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/LabelScore"},
    "description": "The k most likely labels, best first (only when `top_k` was sent).",
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "PredictOne": PredictOne.model_json_schema(),
    "PredictMany": PredictMany.model_json_schema(),
    "LabelScore": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "score"],
    },
    "Prediction": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "model_version": {"type": "string"},
            "scores": RANKED,
        },
        "required": ["label", "model_version"],
    },
    "Predictions": {
        "type": "object",
        "properties": {
            "labels": {"type": "array", "items": {"type": "string"}},
            "model_version": {"type": "string"},
            "scores": {"type": "array", "items": RANKED, "description": "Per text, in order."},
        },
        "required": ["labels", "model_version"],
    },
    "TrainingJob": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "created_at": {"type": "string"},
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "progress": {"type": "object", "nullable": True},
            "model_version": NULLABLE_STRING,
            "metrics": {"type": "object", "nullable": True},
            "error": NULLABLE_STRING,
            "model": {"type": "string", "description": "The model name it trains"},
            "promoted": {
                "type": "boolean",
                "nullable": True,
                "description": "On success: whether the promotion gate made it the champion",
            },
        },
        "required": ["job_id", "status", "created_at"],
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": ["ok", "failed"]},
                "description": '"ok" or "failed" for each dependency (the reason is logged, '
                "never answered).",
            },
        },
        "required": ["status"],
    },
}


def _body(name: str) -> dict[str, Any]:
    return {"content": {JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _answer(description: str, schema: dict[str, Any], **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


def _error(description: str) -> dict[str, Any]:
    return _answer(description, ERROR_REF)


REFUSED = {
    "405": _error("method_not_allowed: another method (the Allow header lists the right one)"),
}
UPSTREAM = {
    "503": _error(
        "algorithm_unavailable: the algorithm service is unreachable or failing; "
        "or its own 503 passed through (no_model: nothing trained yet)"
    ),
    "504": _error("algorithm_unavailable: the algorithm service did not answer in time"),
}
# A prediction naming a model (the algorithm service's answers for that name, passed through).
NAMED_MODEL_ANSWERS = {
    "403": _error("forbidden: the token may not use this model (a token limited to some names)"),
    "404": _error("model_not_found: no model of that name"),
    "503": {
        **_error(
            "algorithm_unavailable: the algorithm service is unreachable or failing; or its own "
            "503 passed through: no_model (the name has no champion yet: train it first), "
            "model_loading (the model is being loaded: retry after Retry-After)"
        ),
        "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "string"}}},
    },
}
BODY_ERRORS = {
    "400": _error("validation_error (with fields) or invalid_json"),
    "413": _error("payload_too_large: larger than the server accepts"),
    "415": _error("unsupported_media_type: the body is not application/json"),
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/predict/": {
        "post": {
            "operationId": "predict",
            "summary": "Label one text, or a batch",
            "description": 'Exactly one of `{"text": "..."}` or `{"texts": ["...", ...]}`, '
            'optionally with `"top_k": k` to get `scores` too, and `"model": "<name>"` to ask '
            "a named model (`default` when absent). Concurrent single-text requests without "
            "`top_k` share one call to the algorithm service per model name.",
            "tags": ["predict"],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/PredictOne"},
                                {"$ref": "#/components/schemas/PredictMany"},
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": _answer(
                    "The label of `text`, or the labels of `texts` in order; with `top_k`, "
                    "their scores",
                    {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Prediction"},
                            {"$ref": "#/components/schemas/Predictions"},
                        ]
                    },
                ),
                **BODY_ERRORS,
                "413": _error(
                    "payload_too_large: larger than the server accepts, or texts holding more "
                    "characters in all than PREDICT_MAX_TOTAL_CHARS"
                ),
                "409": _error(
                    "top_k_above_labels (with fields): `top_k` is above the number of labels "
                    "of the model served now"
                ),
                **REFUSED,
                **UPSTREAM,
                **NAMED_MODEL_ANSWERS,
            },
        }
    },
    "/api/train/": {
        "post": {
            "operationId": "train",
            "summary": "Start training, or join the queued job",
            "description": 'No body (or `{}`) trains `default`; `{"model": "<name>"}` trains that '
            "model name (at most one training per name at a time). Answers at once; poll the "
            "Location.",
            "tags": ["train"],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "model": {
                                    "type": "string",
                                    "pattern": "^[a-z0-9][a-z0-9-]{0,63}$",
                                    "description": "The model name (absent: `default`)",
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": _answer(
                    "The queued job",
                    {"$ref": "#/components/schemas/TrainingJob"},
                    Location="/api/train/{job_id}/: where to poll the job",
                ),
                "400": _error(
                    "invalid_request: a field other than `model`, or a body that is not an "
                    "object; invalid_json; validation_error: `model` is not a model name"
                ),
                "403": _error("forbidden: this token may not use this model name"),
                "404": _error("not_found: no such model name"),
                "413": BODY_ERRORS["413"],
                **REFUSED,
                **UPSTREAM,
            },
        }
    },
    "/api/train/{job_id}/": {
        "get": {
            "operationId": "training_job",
            "summary": "The state of one training job",
            "tags": ["train"],
            "parameters": [
                {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
                }
            ],
            "responses": {
                "200": _answer("The job", {"$ref": "#/components/schemas/TrainingJob"}),
                "403": _error("forbidden: the job trains a model name this token may not use"),
                "404": _error("not_found: no such job"),
                **REFUSED,
                **UPSTREAM,
            },
        }
    },
    "/health/live": {
        "get": {
            "operationId": "health_live",
            "summary": "The process serves HTTP",
            "tags": ["health"],
            "responses": {
                "200": _answer("Alive", {"$ref": "#/components/schemas/Health"}),
                **REFUSED,
            },
        }
    },
    "/health/ready": {
        "get": {
            "operationId": "health_ready",
            "summary": "The database and the algorithm service answer",
            "tags": ["health"],
            "responses": {
                "200": _answer("Ready", {"$ref": "#/components/schemas/Health"}),
                "503": _answer(
                    "Not ready; `checks` says which dependency failed",
                    {"$ref": "#/components/schemas/Health"},
                ),
                **REFUSED,
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of every web process (text exposition format)",
            "description": "Open unless METRICS_TOKEN is set; then send it as a bearer token.",
            "tags": ["observability"],
            "responses": {
                "200": {
                    "description": "The metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _error("METRICS_TOKEN is set: not_authenticated or invalid_token"),
                **REFUSED,
            },
        }
    },
}


SECURITY_SCHEME_NAME = "bearerAuth"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token printed by `make run` (kept in $VAR_DIR/admin-token) or made by "
    "`python -m web createtoken --name NAME --role reader|editor|admin`.",
}
UNAUTHORIZED = _answer(
    "not_authenticated: no bearer token; invalid_token: unknown, expired or revoked",
    ERROR_REF,
    **{"WWW-Authenticate": 'The Bearer challenge, e.g. Bearer realm="api"'},
)
DATABASE_UNAVAILABLE = "database_unavailable: PostgreSQL is unreachable; retry after Retry-After"
RETRY_AFTER = {"description": "Seconds", "schema": {"type": "string"}}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def add_plain_views(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the plain async views, then secure /api/."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    schemas.update(SCHEMAS)
    schemas.update(inference_protocol.SCHEMAS)
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME_NAME] = SECURITY_SCHEME
    # Merge per method: the registry's hook already added GET /api/train/ to the path item.
    paths = dict(result["paths"])
    for path, operations in {**PATHS, **inference_protocol.paths(SECURITY_SCHEME_NAME)}.items():
        paths[path] = {**paths.get(path, {}), **operations}
    result["paths"] = dict(sorted(paths.items()))
    _allow_bulk_create(result["paths"].get("/api/data/", {}).get("post"))
    for path, operations in result["paths"].items():
        if path.startswith("/api/"):
            _secure(path, operations)
        for method, operation in operations.items():
            if method in HTTP_METHODS:
                _declare_body_refusals(operation["responses"])
    return result


def _path_example(parameter: re.Match[str]) -> str:
    """A value the route accepts for a path parameter: only named aliases resolve."""
    return "challenger" if parameter[1] == "alias" else "1"


def _secure(path: str, operations: dict[str, Any]) -> None:
    """Declare the token, the role it needs, and the answers the checks in front add.

    The 429 of the rate limits is declared by their own hook (web/edge/rate_limits.py).
    """
    route = route_name(re.sub(r"\{([^}/]+)\}", _path_example, path))
    if route in PUBLIC_ROUTES:
        return
    for method, operation in operations.items():
        if method not in HTTP_METHODS:
            continue
        needed = required_role(route, method.upper()) if route else None
        operation["security"] = [{SECURITY_SCHEME_NAME: []}]
        responses = operation["responses"]
        responses["401"] = UNAUTHORIZED
        _declare_database_outage(responses)
        if needed is None or needed > READER:
            role = needed.label if needed else "a role no token has"
            needs = f"forbidden: this operation needs role {role}"
            own = responses.get("403", {}).get("description", "")  # e.g. a model name's scope
            if needs not in own:  # the hook may run again on the same operations
                own = own.removeprefix("forbidden: ")
                responses["403"] = _error(f"{needs}; or {own}" if own else needs)
        if needed is not None:
            note = f"Needs a token with role `{needed.label}` or above."
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()


# What the body layer in front of every route (web/edge/body_limits.py) answers for a body it
# refuses, whatever the operation: a GET's body gets a few KiB too.
BODY_REFUSALS = BodyRefusals(
    too_large="payload_too_large: the body is larger than this route accepts",
    too_slow="request_timeout: the body did not arrive within BODY_TIMEOUT_SECONDS",
    busy="server_busy: the process holds as many incoming bodies as it may; retry after "
    "Retry-After",
    busy_code="server_busy",
)


def _declare_body_refusals(responses: dict[str, Any]) -> None:
    declare_body_refusals(responses, BODY_REFUSALS, error_schema=ERROR_REF, retry_after=RETRY_AFTER)


def _declare_database_outage(responses: dict[str, Any]) -> None:
    """The token check (and any view) answers 503 while PostgreSQL is unreachable."""
    unavailable = responses.get("503")
    if unavailable is None:
        unavailable = _error(DATABASE_UNAVAILABLE)
    elif "database_unavailable" not in unavailable["description"]:
        description = f"{unavailable['description']}; or {DATABASE_UNAVAILABLE}"
        unavailable = {**unavailable, "description": description}
    responses["503"] = {
        **unavailable,
        "headers": {**unavailable.get("headers", {}), "Retry-After": RETRY_AFTER},
    }


def _allow_bulk_create(operation: dict[str, Any] | None) -> None:
    """POST /api/data/ takes one row, or a list of rows created all or nothing (and answers so)."""
    if operation is None:
        return
    bodies = [*operation["requestBody"]["content"].values()]
    bodies += operation["responses"]["201"]["content"].values()
    for media in bodies:
        one = media["schema"]
        many = {"type": "array", "items": one, "minItems": 1, "maxItems": settings.BULK_MAX_ROWS}
        media["schema"] = {"oneOf": [one, many]}


class BearerAuthScheme(OpenApiAuthenticationExtension):
    """The scheme of DRF views' authentication class (the identity the middleware checked)."""

    target_class = "web.auth.drf.TokenFromMiddleware"
    name = SECURITY_SCHEME_NAME

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return SECURITY_SCHEME


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Serializers that refuse unknown fields declare it, and each rule field its rule."""

    target_class = "web.data.serializers.RejectUnknownFieldsMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        for name, field in self.target.fields.items():
            if isinstance(field, RuleCharField) and name in schema["properties"]:
                schema["properties"][name]["pattern"] = rules.SCHEMA_PATTERN
        return schema
