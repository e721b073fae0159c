"""Every registry endpoint is in web's OpenAPI document with the statuses it can answer."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

# Every operation needs a token (401), is rate limited (429) and needs PostgreSQL (503 while it is
# unreachable); above reader, 403 too.
GATED = {"401", "429", "503"}
ADMIN_ONLY = {*GATED, "403"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    document: dict[str, Any] = response.json()
    validate(document)
    return document


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/train/", "get", {"200", "400", "404", *GATED}),
        ("/api/models/versions/", "get", {"200", "400", "404", *GATED}),
        ("/api/models/versions/{version}/", "get", {"200", "404", *GATED}),
        ("/api/models/versions/{version}/", "delete", {"204", "400", "404", "409", *ADMIN_ONLY}),
        (
            "/api/models/versions/{version}/restore/",
            "post",
            {"200", "400", "404", "409", *ADMIN_ONLY},
        ),
        ("/api/models/aliases/", "get", {"200", *GATED}),
        ("/api/models/aliases/{alias}/", "put", {"200", "400", "403", "404", "409", "422", *GATED}),
        ("/api/models/aliases/champion/rollback/", "post", {"200", "400", "409", *ADMIN_ONLY}),
        ("/api/models/aliases/{alias}/history/", "get", {"200", "400", "404", *GATED}),
        ("/api/audit/", "get", {"200", "400", "404", *ADMIN_ONLY}),
    ],
)
def test_registry_operations_list_their_statuses(
    schema: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    assert set(schema["paths"][path][method]["responses"]) == statuses


def test_listed_versions_link_to_the_operations_on_one_version(schema: dict[str, Any]) -> None:
    links = schema["paths"]["/api/models/versions/"]["get"]["responses"]["200"]["links"]
    operations = {
        op["operationId"]
        for item in schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {link["operationId"] for link in links.values()} <= operations
    assert set(links) >= {"GetVersion", "DeleteVersion", "RestoreVersion", "MoveChallenger"}


def test_the_job_says_whether_it_was_promoted(schema: dict[str, Any]) -> None:
    job = schema["components"]["schemas"]["TrainingJob"]["properties"]
    assert job["promoted"]["nullable"] is True
