"""The registry's additions to web's OpenAPI document that drf-spectacular cannot infer.

GET /api/train/ shares its route with the async POST view, so its operation is written here;
OpenAPI links connect listed versions to the operations on one version and on the aliases, so
Schemathesis' stateful phase moves aliases to versions that exist, deletes and restores them.
The routes per model name (`/api/models/{name}/...`) share their views with today's routes for
`default`; their operations are named `named_...` here (drf-spectacular would number them), and
the list of names links to them.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
FIRST_LISTED = "$response.body#/results/0/version"
FIRST_NAME = "$response.body#/results/0/name"
NAMED_PREFIX = "/api/models/{name}/"
MODEL_NAME_SCHEMA = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$", "maxLength": 64}

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
        {
            "name": "model",
            "in": "query",
            "schema": MODEL_NAME_SCHEMA,
            "description": "Only this model name's runs",
        },
    ],
    "responses": {
        "200": {"description": "A page of runs", "content": {JSON: {"schema": RUNS_PAGE}}},
        "400": {
            "description": "validation_error: page_size is not from 1 to 500, or model is not "
            "a model name",
            "content": {JSON: {"schema": ERROR_REF}},
        },
        "403": {
            "description": "forbidden: this token may not use this model name",
            "content": {JSON: {"schema": ERROR_REF}},
        },
        "404": {
            "description": "not_found: the cursor is invalid, or no such model name",
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


def _named(links: dict[str, Any]) -> dict[str, Any]:
    """The same links between the operations of one model name (its name passed on)."""
    return {
        name: {
            **link,
            "operationId": f"named_{link['operationId']}",
            "parameters": {**link.get("parameters", {}), "name": "$request.path.name"},
        }
        for name, link in links.items()
    }


NAME_LINKS = {
    "NamedVersions": {
        "operationId": "named_models_versions_list",
        "parameters": {"name": FIRST_NAME},
    },
    "NamedAliases": {
        "operationId": "named_models_aliases_retrieve",
        "parameters": {"name": FIRST_NAME},
    },
    "NamedRollback": {
        "operationId": "named_models_aliases_champion_rollback_create",
        "parameters": {"name": FIRST_NAME},
    },
}


def add_registry_operations(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: GET /api/train/ and the links between operations."""
    paths = result["paths"]
    paths.setdefault("/api/train/", {})["get"] = LIST_RUNS
    for path, operations in paths.items():
        if path.startswith(NAMED_PREFIX):
            for operation in operations.values():
                base = operation["operationId"].removesuffix("_2")
                operation["operationId"] = f"named_{base}"
                for parameter in operation.get("parameters", []):
                    if (parameter["name"], parameter["in"]) == ("name", "path"):
                        parameter["description"] = "The model name (`default`: today's routes)"
    restore_deleted = {
        "RestoreDeleted": {
            "operationId": "models_versions_restore_create",
            "parameters": {"version": "$request.path.version"},
        },
    }
    for prefix, links, after_delete in (
        ("/api/models/", VERSION_LINKS, restore_deleted),
        (NAMED_PREFIX, _named(VERSION_LINKS), _named(restore_deleted)),
    ):
        listed = paths.get(f"{prefix}versions/", {}).get("get")
        if listed is not None:
            listed["responses"]["200"]["links"] = links
        deleted = paths.get(f"{prefix}versions/{{version}}/", {}).get("delete")
        if deleted is not None:
            deleted["responses"]["204"]["links"] = after_delete
    names = paths.get("/api/models/", {}).get("get")
    if names is not None:
        names["responses"]["200"]["links"] = NAME_LINKS
    return result
