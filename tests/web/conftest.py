from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rest_framework.test import APIClient

# Django is configured in the root conftest's pytest_configure, after this file is imported:
# anything that reads Django settings is imported inside the fixtures.


@pytest.fixture
def api(db: Any) -> APIClient:
    """A DRF client against the real database (each test in a rolled-back transaction)."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def make_rows(api: APIClient) -> Any:
    """Create rows through the API and return their JSON."""

    def make(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
        body = [{"text": text, "label": label} for text, label in pairs]
        response = api.post("/api/data/", body, format="json")
        assert response.status_code == 201, response.content
        return list(response.json())

    return make
