"""Web's OpenAPI document: valid, and describing every route of the URL conf."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate
from rest_framework.test import APIClient

# HTML pages for people, not API operations.
NOT_OPERATIONS = {"/api/docs/"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    validate(document)
    return document


def url_conf_paths(patterns: list[Any], prefix: str = "") -> set[str]:
    """Every route of the URL conf as an OpenAPI-style path, parameters written `{}`."""
    paths: set[str] = set()
    for entry in patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$").replace("/?", "/")
        if isinstance(entry, URLResolver):
            paths |= url_conf_paths(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            paths.add("/" + re.sub(r"\(\?P<\w+>[^)]*\)|<[^>]+>", "{}", route))
    return paths


def test_every_route_is_described(schema: dict[str, Any]) -> None:
    described = {re.sub(r"\{\w+\}", "{}", path) for path in schema["paths"]}
    routes = {p for p in url_conf_paths(get_resolver().url_patterns) if not p.startswith("/admin/")}
    assert routes - NOT_OPERATIONS == described  # the admin's pages are for people


def test_predict_takes_exactly_one_of_text_or_texts(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/predict/"]["post"]
    shapes = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    bodies = [schema["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]] for s in shapes]
    assert [(b["required"], b["additionalProperties"]) for b in bodies] == [
        (["text"], False),
        (["texts"], False),
    ]
    assert bodies[1]["properties"]["texts"]["maxItems"] == 1000
    assert all(b["properties"]["model"]["pattern"] == "^[a-z0-9][a-z0-9-]{0,63}$" for b in bodies)
    assert set(operation["responses"]) == {
        *("200", "400", "405", "409", "413", "415", "503", "504"),
        *("401", "429"),
        *("403", "404"),  # a model the token may not use; an unknown model
        "408",  # a body that does not arrive in time
    }


BODY_REFUSALS = {"408", "413", "503"}


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        (
            "/api/train/",
            "post",
            {"202", "400", "401", "403", "404", "405", "429", "504"},
        ),
        ("/api/train/{job_id}/", "get", {"200", "401", "403", "404", "405", "429", "504"}),
        ("/health/live", "get", {"200", "405"}),
        ("/health/ready", "get", {"200", "405", "429"}),  # 429: anonymous per address
    ],
)
def test_plain_views_list_every_status(
    schema: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    responses = schema["paths"][path][method]["responses"]
    # Every operation, besides its own: the body layer's refusals (web/edge/body_limits.py).
    assert set(responses) == statuses | BODY_REFUSALS
    errors = [r for status, r in responses.items() if status >= "400" and path.startswith("/api")]
    assert all(
        r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        for r in errors
    )
    busy = responses["503"]
    assert "server_busy" in busy["description"] and "Retry-After" in busy["headers"]


def test_every_operation_declares_what_the_body_layer_refuses(schema: dict[str, Any]) -> None:
    """A body too large, too slow, or beyond the process's budget: refused before any view."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert set(responses) >= BODY_REFUSALS, (method, path)
            busy = responses["503"]
            assert "server_busy" in busy["description"], (method, path)
            assert "Retry-After" in busy["headers"], (method, path)


def test_train_answer_names_its_location(schema: dict[str, Any]) -> None:
    accepted = schema["paths"]["/api/train/"]["post"]["responses"]["202"]
    assert "Location" in accepted["headers"]


def test_request_bodies_refuse_unknown_fields(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["DataRequest"]["additionalProperties"] is False
    assert components["PatchedDataRequest"]["additionalProperties"] is False
    create = schema["paths"]["/api/data/"]["post"]["requestBody"]["content"]["application/json"]
    one, many = create["schema"]["oneOf"]
    assert many == {"type": "array", "items": one, "minItems": 1, "maxItems": 10_000}
    train = schema["paths"]["/api/train/"]["post"]["requestBody"]["content"]["application/json"]
    assert train["schema"]["additionalProperties"] is False


def test_predict_takes_top_k_and_answers_scores(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for body in ("PredictOne", "PredictMany"):
        top_k = components[body]["properties"]["top_k"]
        assert (top_k["type"], top_k["minimum"], "default" in top_k) == ("integer", 1, False)
        assert "top_k" not in components[body]["required"]
    ranked = {"$ref": "#/components/schemas/LabelScore"}
    assert components["Prediction"]["properties"]["scores"]["items"] == ranked
    assert components["Predictions"]["properties"]["scores"]["items"]["items"] == ranked
    assert components["LabelScore"]["required"] == ["label", "score"]


def test_clients_fetching_the_schema_at_once_all_get_it(schema: dict[str, Any]) -> None:
    """Concurrent generations once raced in drf-spectacular's shared inspectors (a 500)."""

    def fetch(_: int) -> tuple[int, int]:
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        return response.status_code, len(response.json()["paths"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(fetch, range(18)))
    assert answers == [(200, len(schema["paths"]))] * 18
