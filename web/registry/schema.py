"""The registry's additions to web's OpenAPI document that drf-spectacular cannot infer.

GET /api/train/ shares its route with the async POST view, so its operation is written here;
OpenAPI links connect listed versions to the operations on one version and on the aliases, so
Schemathesis' stateful phase moves aliases to versions that exist, deletes and restores them.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
FIRST_LISTED = "$response.body#/results/0/version"

RUNS_PAGE = {
    "type": "object",
    "properties": {
        "next": {"type": "string", "format": "uri", "nullable": True},
        "previous": {"type": "string", "format": "uri", "nullable": True},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/TrainingRun"}},
    },
    "required": ["results"],
}
LIST_RUNS = {
    "operationId": "training_runs",
    "summary": "Training runs, newest first (kept in PostgreSQL, not only while Redis is)",
    "tags": ["train"],
    "parameters": [
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string"},
            "description": "The pagination cursor (follow `next`)",
        },
        {
            "name": "page_size",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            "description": "Runs per page (at most 500)",
        },
    ],
    "responses": {
        "200": {"description": "A page of runs", "content": {JSON: {"schema": RUNS_PAGE}}},
        "400": {
            "description": "validation_error: page_size is not from 1 to 500",
            "content": {JSON: {"schema": ERROR_REF}},
        },
        "404": {
            "description": "not_found: the cursor is invalid",
            "content": {JSON: {"schema": ERROR_REF}},
        },
    },
}
VERSION_LINKS = {
    "GetVersion": {
        "operationId": "models_versions_retrieve",
        "parameters": {"version": FIRST_LISTED},
    },
    "DeleteVersion": {
        "operationId": "models_versions_destroy",
        "parameters": {"version": FIRST_LISTED},
    },
    "RestoreVersion": {
        "operationId": "models_versions_restore_create",
        "parameters": {"version": FIRST_LISTED},
    },
    "MoveChallenger": {
        "operationId": "models_aliases_update",
        "parameters": {"alias": "challenger"},
        "requestBody": {"version": FIRST_LISTED, "reason": "stateful check"},
    },
}


def add_registry_operations(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: GET /api/train/ and the links between operations."""
    paths = result["paths"]
    paths.setdefault("/api/train/", {})["get"] = LIST_RUNS
    listed = paths.get("/api/models/versions/", {}).get("get")
    if listed is not None:
        listed["responses"]["200"]["links"] = VERSION_LINKS
    deleted = paths.get("/api/models/versions/{version}/", {}).get("delete")
    if deleted is not None:
        deleted["responses"]["204"]["links"] = {
            "RestoreDeleted": {
                "operationId": "models_versions_restore_create",
                "parameters": {"version": "$request.path.version"},
            },
        }
    return result
