"""Every registry endpoint is in web's OpenAPI document with the statuses it can answer."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

# Every operation needs a token (401), is rate limited (429) and needs PostgreSQL (503 while it is
# unreachable), and its body may be refused before it runs (408, 413; 503 over the budget);
# above reader, 403 too.
GATED = {"401", "429", "503", "408", "413"}
ADMIN_ONLY = {*GATED, "403"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    document: dict[str, Any] = response.json()
    validate(document)
    return document


# Every route of one model: 403 when the token may not use the name, 404 when there is none.
PER_MODEL = [
    ("versions/", "get", {"200", "400", "403", "404", *GATED}),
    ("versions/{version}/", "get", {"200", "403", "404", *GATED}),
    ("versions/{version}/", "delete", {"204", "400", "404", "409", *ADMIN_ONLY}),
    ("versions/{version}/restore/", "post", {"200", "400", "404", "409", *ADMIN_ONLY}),
    ("aliases/", "get", {"200", "403", "404", *GATED}),
    ("aliases/{alias}/", "put", {"200", "400", "403", "404", "409", "422", *GATED}),
    ("aliases/champion/rollback/", "post", {"200", "400", "404", "409", *ADMIN_ONLY}),
    ("aliases/{alias}/history/", "get", {"200", "400", "403", "404", *GATED}),
]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/train/", "get", {"200", "400", "403", "404", *GATED}),
        ("/api/models/", "get", {"200", "404", *GATED}),
        *((f"/api/models/{path}", method, statuses) for path, method, statuses in PER_MODEL),
        *(
            (f"/api/models/{{name}}/{path}", method, statuses)
            for path, method, statuses in PER_MODEL
        ),
        ("/api/audit/", "get", {"200", "400", "404", *ADMIN_ONLY}),
    ],
)
def test_registry_operations_list_their_statuses(
    schema: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    assert set(schema["paths"][path][method]["responses"]) == statuses


@pytest.mark.parametrize("prefix", ["/api/models/", "/api/models/{name}/"])
def test_listed_versions_link_to_the_operations_on_one_version(
    schema: dict[str, Any], prefix: str
) -> None:
    links = schema["paths"][f"{prefix}versions/"]["get"]["responses"]["200"]["links"]
    operations = [
        op["operationId"]
        for item in schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(operations) == len(set(operations))  # one name each, none numbered
    assert {link["operationId"] for link in links.values()} <= set(operations)
    assert set(links) >= {"GetVersion", "DeleteVersion", "RestoreVersion", "MoveChallenger"}
    names = schema["paths"]["/api/models/"]["get"]["responses"]["200"]["links"]
    assert {link["operationId"] for link in names.values()} <= set(operations)


def test_the_job_says_whether_it_was_promoted(schema: dict[str, Any]) -> None:
    job = schema["components"]["schemas"]["TrainingJob"]["properties"]
    assert job["promoted"]["nullable"] is True
