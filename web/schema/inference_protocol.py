"""The /v2 routes (Open Inference Protocol) in web's schema: core's description of them, with
the answers web's token check, rate limits and algorithm client add, in the protocol's shape."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core import inference_protocol_openapi as v2

SCHEMAS = v2.component_schemas(
    max_texts=settings.PREDICT_MAX_TEXTS, max_chars=settings.PREDICT_MAX_CHARS
)
ANSWERS: dict[str, dict[str, Any]] = {
    "401": {
        **v2.error(
            "not_authenticated: no bearer token; invalid_token: unknown, expired or revoked"
        ),
        "headers": {
            "WWW-Authenticate": {
                "description": "The Bearer challenge",
                "schema": {"type": "string"},
            }
        },
    },
    "405": v2.error("method_not_allowed: another method (the Allow header lists the right one)"),
    "429": {
        **v2.error("rate_limited: over the limit per token (inference: predict; else reads)"),
        "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "string"}}},
    },
    "503": v2.error(
        "algorithm_unavailable: the algorithm service is unreachable or failing; or its own 503 "
        "passed on (no_model: nothing trained yet)"
    ),
    "504": v2.error("algorithm_unavailable: the algorithm service did not answer in time"),
}
NAME_PATTERN = "^[0-9A-Za-z_.-]{1,64}$"  # what web/urls.py routes
# Routes naming a model: a token limited to some names is refused the others; a model being
# loaded (a cold named model's first request) answers 503 with Retry-After.
MODEL_ANSWERS: dict[str, dict[str, Any]] = {
    "403": v2.error("forbidden: the token may not use this model (a token limited to some names)"),
    "503": {
        **v2.error(
            "no_model: nothing trained for this name yet; model_loading: being loaded, retry "
            "after Retry-After; algorithm_unavailable: the algorithm service is unreachable"
        ),
        "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "string"}}},
    },
}


def paths(security_scheme: str) -> dict[str, Any]:
    """The /v2 paths: every operation needs a token (any role) and is rate limited."""
    described = v2.paths(errors=ANSWERS)
    for path, operations in described.items():
        for operation in operations.values():
            if "{name}" in path:
                operation["responses"] = {**operation["responses"], **MODEL_ANSWERS}
            operation["security"] = [{security_scheme: []}]
            operation["description"] = "Needs a token with role `reader` or above."
            operation["parameters"] = [
                {**parameter, "schema": {"type": "string", "pattern": NAME_PATTERN}}
                for parameter in operation.get("parameters", [])
            ]
            if not operation["parameters"]:
                del operation["parameters"]
    return described
