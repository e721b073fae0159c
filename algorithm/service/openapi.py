"""OpenAPI 3 document and Swagger UI for the algorithm service.

Response schemas come from the pydantic models the views answer with, so they cannot drift. The
predict body is written out here: its rules (exactly one of `text` or `texts`, the configured
limits) live in validators that pydantic cannot express as a schema. Every operation lists every
status it answers; a method a path does not support answers 405 with `Allow`. Every operation but
the health probes needs the service token (`serviceToken`, 401 without it). Swagger UI's files
ship in a Python package: no CDN needed.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from pydantic.json_schema import models_json_schema

from algorithm.service.schemas import (
    BatchPredictResponse,
    Error,
    Liveness,
    PredictResponse,
    Readiness,
    Started,
)
from core import inference_protocol_openapi as v2
from core.jobs import Job
from core.model_names import DEFAULT_MODEL, MODEL_NAME_PATTERN, RESERVED_MODEL_NAMES
from core.request_body_openapi import BodyRefusals, declare_body_refusals

docs = Blueprint("docs", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    """A response in the error shape; the description names the `error` codes it carries."""
    return _json(_ref("Error"), description)


TOO_LARGE = _error("Body over the configured limit: `request_entity_too_large`")
UNAUTHORIZED = {
    **_error("No service token, or not one of ALGORITHM_TOKENS: `unauthorized`"),
    "headers": {
        "WWW-Authenticate": {
            "description": "The Bearer challenge",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}
V2_UNAUTHORIZED = {
    **v2.error("No service token, or not one of ALGORITHM_TOKENS: code `unauthorized`"),
    "headers": UNAUTHORIZED["headers"],
}
SERVICE_TOKEN = {
    "type": "http",
    "scheme": "bearer",
    "description": "One of the service tokens in ALGORITHM_TOKENS (web sends ALGORITHM_TOKEN).",
}
OPEN: dict[str, list[Any]] = {"security": []}  # probes and /metrics need no service token
BROKER_DOWN = _error("Redis does not answer: `broker_unavailable`")
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (with `model_loading` and "
        "`broker_unavailable`)",
        "required": False,
        "schema": {"type": "string"},
    }
}
MODEL_NAME = {
    "type": "string",
    "pattern": f"^{MODEL_NAME_PATTERN}$",
    "not": {"enum": sorted(RESERVED_MODEL_NAMES)},
    "default": DEFAULT_MODEL,
    "description": "The model name (absent: `default`).",
}
MODEL_NOT_FOUND = _error("No model of that name: `model_not_found`")


def predict_request_schema(
    *, max_texts: int, max_chars: int, max_top_k: int, label_count: int | None = None
) -> dict[str, Any]:
    """Exactly one of `text` or `texts`, as two closed objects, each with an optional `top_k`."""
    text = {
        "type": "string",
        "minLength": 1,
        "maxLength": max_chars,
        "pattern": r"\S",
        "description": "Not blank.",
    }
    texts = {"type": "array", "items": text, "minItems": 1, "maxItems": max_texts}
    top_k: dict[str, Any] = {
        "type": "integer",
        "minimum": 1,
        "maximum": max_top_k,
        "description": "Also answer `scores`: the k most likely labels, best first. At most "
        "PREDICT_MAX_TOP_K and the number of labels of the served model.",
    }
    if label_count is not None:  # the served model's limit, so the schema admits no 400
        top_k["maximum"] = min(label_count, max_top_k)
    return {
        "oneOf": [
            {
                "title": "OneText",
                "type": "object",
                "properties": {"model": MODEL_NAME, "text": text, "top_k": top_k},
                "required": ["text"],
                "additionalProperties": False,
            },
            {
                "title": "TextBatch",
                "type": "object",
                "properties": {"model": MODEL_NAME, "texts": texts, "top_k": top_k},
                "required": ["texts"],
                "additionalProperties": False,
            },
        ]
    }


@cache
def build_openapi(
    *, max_texts: int, max_chars: int, max_top_k: int, max_total_chars: int, label_count: int | None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with this service's limits and its model's label count."""
    _, defs = models_json_schema(
        [
            (m, "serialization")
            for m in (
                PredictResponse,
                BatchPredictResponse,
                Job,
                Error,
                Liveness,
                Readiness,
                Started,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    request = predict_request_schema(
        max_texts=max_texts, max_chars=max_chars, max_top_k=max_top_k, label_count=label_count
    )
    schemas = {"PredictRequest": request, **defs["$defs"]}
    schemas |= v2.component_schemas(max_texts=max_texts, max_chars=max_chars)
    job = _json(_ref("Job"), "The job")
    location = {
        "description": "Where the job's state is answered",
        "required": True,
        "schema": {"type": "string"},
    }
    queued = {
        **_json(_ref("Job"), "The queued job (a new one, or the one already waiting)"),
        "headers": {"Location": location},
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "textclf algorithm service", "version": "1.0.0"},
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Label one text or a batch",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("PredictRequest")}},
                    },
                    "responses": {
                        "200": _json(
                            {"oneOf": [_ref("PredictResponse"), _ref("BatchPredictResponse")]},
                            "Labels and the model version that produced them; with "
                            "`top_k`, also `scores`",
                        ),
                        "400": _error(
                            "Invalid input: `invalid_json`, or `validation_error` with "
                            "`fields` naming each field's problems (`top_k` above the "
                            "served model's label count and PREDICT_MAX_TOP_K included, a "
                            "`model` that is not a model name)"
                        ),
                        "401": UNAUTHORIZED,
                        "413": _error(
                            "Body over the configured limit, or texts holding more than "
                            f"{max_total_chars} characters in all (PREDICT_MAX_TOTAL_CHARS): "
                            "`request_entity_too_large`"
                        ),
                        "415": _error(
                            "Body not sent as application/json: `unsupported_media_type`"
                        ),
                        "404": MODEL_NOT_FOUND,
                        "503": {
                            **_error(
                                "Nothing trained yet for that model: `no_model`; a model "
                                "still loading after MODEL_LOAD_WAIT_SECONDS, or one that "
                                "could not be loaded here: `model_loading`; Redis not "
                                "answering for a model not loaded: `broker_unavailable`"
                            ),
                            "headers": RETRY_AFTER,
                        },
                    },
                }
            },
            "/train": {
                "post": {
                    "summary": "Queue a training job of a model (or get the one already "
                    "queued); no body trains `default`",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"model": MODEL_NAME},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "parameters": [
                        {
                            "name": "X-Requested-By",
                            "in": "header",
                            "required": False,
                            "description": "Who asked (e.g. `token:ci`), percent-encoded "
                            "UTF-8; kept with a new job for its training run",
                            "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
                        }
                    ],
                    "responses": {
                        "202": queued,
                        "400": _error(
                            'A body other than `{"model": "<name>"}`, or '
                            "`X-Requested-By` is not visible ASCII: `invalid_request`; a "
                            "`model` that is not a model name: `validation_error`"
                        ),
                        "401": UNAUTHORIZED,
                        "404": MODEL_NOT_FOUND,
                        "413": TOO_LARGE,
                        "415": _error(
                            "A body not sent as application/json: `unsupported_media_type`"
                        ),
                        "503": BROKER_DOWN,
                    },
                }
            },
            "/train/{job_id}": {
                "get": {
                    "summary": "State of a training job",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": job,
                        "401": UNAUTHORIZED,
                        "404": _error(
                            "No such job (or it expired): `job_not_found`; `not_found` "
                            "when the id holds a `/`"
                        ),
                        "503": BROKER_DOWN,
                    },
                }
            },
            "/health/live": {
                "get": {
                    "summary": "Liveness",
                    **OPEN,
                    "responses": {"200": _json(_ref("Liveness"), "Up")},
                }
            },
            "/health/started": {
                "get": {
                    "summary": "Startup probe: this process serves the registry's champion (or "
                    "none is announced yet)",
                    **OPEN,
                    "responses": {
                        "200": _json(_ref("Started"), "Serving the champion"),
                        "503": _error(
                            "The champion is not loaded here yet (downloading, verifying, or "
                            "refused: see the replica's report): `model_loading`"
                        ),
                    },
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Readiness (Redis) and the model version this process serves",
                    **OPEN,
                    "responses": {
                        "200": _json(_ref("Readiness"), "Ready"),
                        "503": _json(_ref("Readiness"), "Redis does not answer"),
                    },
                }
            },
            **v2.paths(errors={"401": V2_UNAUTHORIZED}),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of every process of this service (text format); "
                    "open unless METRICS_TOKEN is set, then a bearer token",
                    # Not the service token: scrapers hold METRICS_TOKEN, which is off by default.
                    **OPEN,
                    "responses": {
                        "200": {
                            "description": "The metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _error("METRICS_TOKEN is set and was not sent: `unauthorized`"),
                    },
                }
            },
        },
        "security": [{"serviceToken": []}],
        "components": {"schemas": schemas, "securitySchemes": {"serviceToken": SERVICE_TOKEN}},
    }
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if method in HTTP_METHODS:
                _declare_body_refusals(operation["responses"])
    return document


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
# What FlaskASGI answers on any route for a body it refuses (event_loop.py): a GET's body too.
BODY_REFUSALS = BodyRefusals(
    too_large="`request_entity_too_large`: the body is larger than this route accepts",
    too_slow="`request_timeout`: the body did not arrive within BODY_TIMEOUT_SECONDS",
    busy="`service_unavailable`: the process holds as many incoming bodies as it may; "
    "retry after Retry-After",
    busy_code="service_unavailable",
)


def _declare_body_refusals(responses: dict[str, Any]) -> None:
    declare_body_refusals(
        responses,
        BODY_REFUSALS,
        error_schema=_ref("Error"),
        retry_after=RETRY_AFTER["Retry-After"],
    )


def _swagger_dist() -> Path:
    spec = importlib.util.find_spec("drf_spectacular_sidecar")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist"


SWAGGER_PAGE = """<!doctype html>
<html><head><title>textclf algorithm API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


@docs.get("/openapi.json")
def openapi_json() -> Response:
    runtime = current_app.extensions["textclf"]
    served = runtime.models.current
    return jsonify(
        build_openapi(
            max_texts=runtime.settings.predict_max_texts,
            max_chars=runtime.settings.predict_max_chars,
            max_top_k=runtime.settings.predict_max_top_k,
            max_total_chars=runtime.settings.predict_max_total_chars,
            label_count=served.label_count if served else None,
        )
    )


@docs.get("/docs")
def swagger_ui() -> Response:
    return Response(SWAGGER_PAGE, mimetype="text/html")


@docs.get("/docs/static/<path:name>")
def swagger_static(name: str) -> Response:
    return send_from_directory(_swagger_dist(), name)
