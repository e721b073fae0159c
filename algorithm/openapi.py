"""OpenAPI 3 document and Swagger UI for the algorithm service.

Schemas come from the pydantic models that validate the bodies, so the document cannot drift
from what the endpoints accept. Swagger UI's files ship in a Python package: no CDN needed.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, send_from_directory
from pydantic.json_schema import models_json_schema

from algorithm.jobs import Job
from algorithm.schemas import BatchPredictResponse, Error, PredictRequest, PredictResponse

docs = Blueprint("docs", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Invalid input", 404: "Not found", 413: "Body too large",
            415: "Body is not JSON", 503: "Unavailable"}  # fmt: skip
    return {str(status): _json(_ref("Error"), text[status]) for status in statuses}


@cache
def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    _, defs = models_json_schema(
        [(m, "validation") for m in (PredictRequest, PredictResponse, BatchPredictResponse, Job,
                                     Error)],
        ref_template="#/components/schemas/{model}",
    )  # fmt: skip
    job = _json(_ref("Job"), "The job")
    return {
        "openapi": "3.1.0",
        "info": {"title": "textclf algorithm service", "version": "1.0.0"},
        "paths": {
            "/predict": {"post": {
                "summary": "Label one text or a batch",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("PredictRequest")}}},
                "responses": {
                    "200": _json({"oneOf": [_ref("PredictResponse"), _ref("BatchPredictResponse")]},
                                 "Labels and the model version that produced them"),
                    **_errors(400, 413, 415, 503),
                },
            }},
            "/train": {"post": {
                "summary": "Queue a training job (or get the one already queued)",
                "responses": {"202": job, **_errors(400, 503)},
            }},
            "/train/{job_id}": {"get": {
                "summary": "State of a training job",
                "parameters": [{"name": "job_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": job, **_errors(404, 503)},
            }},
            "/health/live": {"get": {"summary": "Liveness",
                                     "responses": {"200": {"description": "Up"}}}},
            "/health/ready": {"get": {"summary": "Readiness (Redis) and loaded model version",
                                      "responses": {"200": {"description": "Ready"},
                                                    "503": {"description": "Not ready"}}}},
        },
        "components": {"schemas": defs["$defs"]},
    }  # fmt: skip


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
    return jsonify(build_openapi())


@docs.get("/docs")
def swagger_ui() -> Response:
    return Response(SWAGGER_PAGE, mimetype="text/html")


@docs.get("/docs/static/<path:name>")
def swagger_static(name: str) -> Response:
    return send_from_directory(_swagger_dist(), name)
