"""The algorithm service's credential: who may call what, table-driven, on a real server.

Every protected operation answers 401 in the error shape with a Bearer challenge to a caller
without a token or with a wrong one, and its usual answer to a holder of any configured token;
health and the docs stay open. Nothing answered or logged contains a token.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from algorithm.ml import artifacts
from algorithm.service.app import create_asgi_app
from algorithm.service.auth import bearer_token, is_accepted
from algorithm.service.config import AlgorithmSettings
from tests.algorithm.conftest import LiveServer
from tests.helpers import assert_error, signing_keys

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
WRONG = secrets.token_urlsafe(32)

# method, path, body; status with an accepted token (None: any status but 401).
PROTECTED = [
    ("POST", "/predict", {"text": "a regex engine"}, 200),
    ("POST", "/predict", {"texts": ["a", "b"], "top_k": 1}, 200),
    ("POST", "/predict", {"text": ""}, 400),  # validated only after the caller is known
    ("POST", "/train", None, 202),
    ("GET", "/train/no-such-job", None, 404),
]
# Unknown paths and methods: the same answer for everyone (the schema lists the routes anyway).
ROUTING = [("GET", "/predict", 405), ("DELETE", "/health/live", 405), ("GET", "/nowhere", 404)]
OPEN = ["/health/live", "/health/ready", "/openapi.json", "/docs", "/docs/static/swagger-ui.css"]
CALLERS = {
    "old token": {"Authorization": f"Bearer {OLD}"},
    "new token": {"Authorization": f"bearer {NEW}"},  # the scheme is case-insensitive
    "wrong token": {"Authorization": f"Bearer {WRONG}"},
    "old token's prefix": {"Authorization": f"Bearer {OLD[:-1]}"},
    "basic credentials": {"Authorization": f"Basic {OLD}"},
    "bare scheme": {"Authorization": "Bearer"},
    "no token": {},
}
ACCEPTED = {"old token", "new token"}


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory, fixture_training: Any) -> Path:
    root = tmp_path_factory.mktemp("models")
    model, metrics = fixture_training
    artifacts.publish_model_version(
        root, model, metrics=metrics, fingerprint={}, rows=0, signing_keys=signing_keys()
    )
    return root


@pytest.fixture(scope="module")
def base_url(model_root: Path) -> Iterator[str]:
    """The service with two accepted tokens (mid-rotation), a model, and a queue that keeps jobs.

    One server for the module: the tests only read, or queue the one job that stays queued.
    """
    settings = AlgorithmSettings(model_dir=model_root, algorithm_tokens=(OLD, NEW))
    server = LiveServer(create_asgi_app(settings, enqueue=lambda job_id: None))
    yield server.url
    server.stop()


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "body", "status"), PROTECTED)
def test_protected_operations_answer_only_token_holders(
    base_url: str, caller: str, method: str, path: str, body: Any, status: int
) -> None:
    with httpx.Client(base_url=base_url, headers=CALLERS[caller], timeout=10) as client:
        response = client.request(method, path, json=body)
    if caller in ACCEPTED:
        assert response.status_code == status, response.text
        return
    error = assert_error(response, 401, "unauthorized")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    presented_a_bearer = caller in {"wrong token", "old token's prefix"}
    assert ('error="invalid_token"' in challenge) == presented_a_bearer
    assert not any(token in response.text for token in (OLD, NEW, WRONG, OLD[:-1]))
    assert "Bearer" in error["detail"]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "status"), ROUTING)
def test_unknown_routes_and_methods_answer_the_same_to_everyone(
    base_url: str, caller: str, method: str, path: str, status: int
) -> None:
    with httpx.Client(base_url=base_url, headers=CALLERS[caller], timeout=10) as client:
        response = client.request(method, path)
    assert_error(response, status)
    assert (status == 405) == ("Allow" in response.headers)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", OPEN)
def test_health_and_docs_are_open_to_everyone(base_url: str, caller: str, path: str) -> None:
    with httpx.Client(base_url=base_url, headers=CALLERS[caller], timeout=10) as client:
        assert client.get(path).status_code == 200


def test_the_schema_declares_the_token_and_the_401_of_every_protected_operation(
    base_url: str,
) -> None:
    schema = httpx.get(f"{base_url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["serviceToken"]["scheme"] == "bearer"
    assert schema["security"] == [{"serviceToken": []}]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path.startswith("/health/"):
                assert operation["security"] == []
            else:
                assert "401" in operation["responses"], path


def test_a_refused_token_is_never_logged(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    for caller in ("wrong token", "old token's prefix", "new token"):
        httpx.post(f"{base_url}/predict", json={"text": "x"}, headers=CALLERS[caller])
    assert not any(token in caplog.text for token in (OLD, NEW, WRONG))


def test_comparison_looks_at_every_configured_token() -> None:
    accepted = [OLD.encode(), NEW.encode()]
    assert is_accepted(NEW.encode(), accepted) and is_accepted(OLD.encode(), accepted)
    assert not is_accepted(OLD.encode() + b"x", accepted)
    assert not is_accepted(b"", accepted)
    assert bearer_token("Bearer  abc ") == b"abc"
    assert bearer_token("Token abc") is None and bearer_token(None) is None


def test_tokens_come_comma_separated_and_short_or_missing_ones_are_refused_unnamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALGORITHM_TOKENS", f" {OLD} ,{NEW},")
    assert AlgorithmSettings().algorithm_tokens == (OLD, NEW)
    for value in ("", "too-short-token", f"{OLD},short"):
        monkeypatch.setenv("ALGORITHM_TOKENS", value)
        with pytest.raises(ValidationError, match="ALGORITHM_TOKENS") as refused:
            AlgorithmSettings()
        assert all(token not in str(refused.value) for token in value.split(",") if token)
