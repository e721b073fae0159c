"""The /v2 routes (Open Inference Protocol) in OpenAPI, as both services' schemas declare them.

Written in our words from the protocol's REST text, in the JSON Schema that OpenAPI 3.0 (web)
and 3.1 (the algorithm service) share. Each service adds its own security scheme and the answers
of what stands in front of its routes (401, 413, 429...). The request schema states every rule the
servers check that JSON Schema can say; what it cannot (a tensor's shape must match its data) is
answered 400, which is why Schemathesis runs the inference operations without its positive-data
check (tests/e2e/test_schema_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from core import inference_protocol as oip

JSON = "application/json"
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "A concrete version, or an alias: champion, previous, challenger",
    "schema": {"type": "string"},
}
STRING: dict[str, Any] = {"type": "string"}
OBJECT: dict[str, Any] = {
    "type": "object",
    "description": "Passed through; unknown parameters are ignored.",
}
TENSOR_METADATA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": STRING,
        "datatype": STRING,
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def inference_request_schema(*, max_texts: int, max_chars: int) -> dict[str, Any]:
    """An inference request this model takes: one BYTES input `text`, [N] or [N, 1]."""
    text = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S"}
    one_text_row = {"type": "array", "items": text, "minItems": 1, "maxItems": 1}
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [oip.INPUT_NAME]},
            "datatype": {"type": "string", "enum": ["BYTES"]},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 2,
                "description": "[N] or [N, 1]; N is the number of texts in `data`",
            },
            "parameters": OBJECT,
            "data": {
                "type": "array",
                "items": {"anyOf": [text, one_text_row]},
                "minItems": 1,
                "maxItems": max_texts,
                "description": "The texts, flat or (for [N, 1]) one per row",
            },
        },
        "required": ["name", "datatype", "shape", "data"],
    }
    output = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": list(oip.OUTPUTS)},
            "parameters": {
                "type": "object",
                "properties": {
                    "classification": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "On `probabilities`: the k best labels as "
                        '"<score>:<index>:<label>" (at most the model\'s label count)',
                    }
                },
            },
        },
        "required": ["name"],
    }
    return {
        "type": "object",
        "properties": {
            "id": STRING,
            "parameters": OBJECT,
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": output, "description": "Default: every output"},
        },
        "required": ["inputs"],
    }


def component_schemas(*, max_texts: int, max_chars: int) -> dict[str, Any]:
    """The /v2 bodies, named `V2...` beside each service's own."""
    return {
        "V2Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "What went wrong, for a person"},
                "code": {"type": "string", "description": "Our error code, e.g. no_model"},
            },
            "required": ["error"],
        },
        "V2ServerMetadata": {
            "type": "object",
            "properties": {
                "name": STRING,
                "version": STRING,
                "extensions": {"type": "array", "items": STRING},
            },
            "required": ["name", "version", "extensions"],
        },
        "V2Live": {
            "type": "object",
            "properties": {"live": {"type": "boolean"}},
            "required": ["live"],
        },
        "V2Ready": {
            "type": "object",
            "properties": {"ready": {"type": "boolean"}},
            "required": ["ready"],
        },
        "V2ModelReady": {
            "type": "object",
            "properties": {"name": STRING, "version": STRING, "ready": {"type": "boolean"}},
            "required": ["name", "version", "ready"],
        },
        "V2ModelMetadata": {
            "type": "object",
            "properties": {
                "name": STRING,
                "versions": {"type": "array", "items": STRING},
                "platform": STRING,
                "inputs": {"type": "array", "items": TENSOR_METADATA},
                "outputs": {"type": "array", "items": TENSOR_METADATA},
            },
            "required": ["name", "platform", "inputs", "outputs"],
        },
        "V2InferenceRequest": inference_request_schema(max_texts=max_texts, max_chars=max_chars),
        "V2InferenceResponse": {
            "type": "object",
            "properties": {
                "model_name": STRING,
                "model_version": STRING,
                "id": STRING,
                "parameters": {"type": "object"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {**TENSOR_METADATA["properties"], "data": {"type": "array"}},
                        "required": ["name", "datatype", "shape", "data"],
                    },
                },
            },
            "required": ["model_name", "model_version", "outputs"],
        },
    }


def _answer(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


def error(description: str) -> dict[str, Any]:
    return _answer("V2Error", description)


NOT_FOUND = error("model_not_found: no such model; version_not_loaded: that version is not served")
NO_MODEL = error("no_model: nothing trained (or published) yet")


def paths(*, errors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The /v2 paths; `errors` are the service's answers to add to every operation (where the
    operation does not declare that status itself)."""
    model_get = {
        "summary": "The model's metadata: its input, its outputs, the versions served",
        "responses": {
            "200": _answer("V2ModelMetadata", "The metadata"),
            "404": NOT_FOUND,
            "503": NO_MODEL,
        },
    }
    model_ready = {
        "summary": "Whether the model (version) is ready to answer inference",
        "responses": {
            "200": _answer("V2ModelReady", "Ready"),
            "404": NOT_FOUND,
            "503": NO_MODEL,
        },
    }
    infer = {
        "summary": "Label BYTES texts; with Triton's classification extension, the k best labels",
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _ref("V2InferenceRequest")}},
        },
        "responses": {
            "200": _answer("V2InferenceResponse", "The outputs asked for, and the version used"),
            "400": error(
                "invalid_json, invalid_request (not an inference request this model takes), "
                "validation_error (a text or a limit), unsupported_media_type (binary data)"
            ),
            "404": NOT_FOUND,
            "413": error("The body is over the configured limit"),
            "503": NO_MODEL,
        },
    }
    operations: dict[str, dict[str, dict[str, Any]]] = {
        "/v2": {
            "get": {
                "summary": "The server's metadata and protocol extensions",
                "responses": {"200": _answer("V2ServerMetadata", "The metadata")},
            }
        },
        "/v2/health/live": {
            "get": {"summary": "Liveness", "responses": {"200": _answer("V2Live", "Live")}}
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Readiness: a model is served",
                "responses": {
                    "200": _answer("V2Ready", "Ready"),
                    "503": {
                        "description": "Not ready: no model yet",
                        "content": {
                            JSON: {"schema": {"anyOf": [_ref("V2Ready"), _ref("V2Error")]}}
                        },
                    },
                },
            }
        },
        "/v2/models/{name}": {"get": model_get},
        "/v2/models/{name}/ready": {"get": model_ready},
        "/v2/models/{name}/infer": {"post": infer},
        "/v2/models/{name}/versions/{version}": {"get": model_get},
        "/v2/models/{name}/versions/{version}/ready": {"get": model_ready},
        "/v2/models/{name}/versions/{version}/infer": {"post": infer},
    }
    result: dict[str, Any] = {}
    for path, methods in operations.items():
        parameters = [NAME] if "{name}" in path else []
        parameters += [VERSION] if "{version}" in path else []
        result[path] = {}
        for method, operation in methods.items():
            words = path.removeprefix("/v2").strip("/").replace("{", "").replace("}", "")
            operation = {**operation, "tags": ["inference protocol (v2)"]}
            operation["operationId"] = f"v2_{words.replace('/', '_') or 'server'}_{method}"
            if parameters:
                operation["parameters"] = parameters
            operation["responses"] = {**errors, **operation["responses"]}
            result[path][method] = operation
    return result
