"""Small helpers every test module shares: waiting for a condition, checking the error shape."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from algorithm.ml.signing import SigningKeys
from core.process import Child

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns something truthy and return that (AssertionError on timeout).

    Exceptions from `probe` propagate at once: a probe that may fail while waiting catches its
    own expected errors and returns None.
    """
    retrying = Retrying(
        retry=retry_if_result(lambda value: not value),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry_error_callback=lambda state: None,
    )
    result = retrying(probe)
    if not result:
        raise AssertionError(f"{what} not reached within {timeout:g} s")
    return result


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an answer in the one error shape (status, `error` code, non-empty `detail`)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header that presents the token `secret`."""
    return {"Authorization": f"Bearer {secret}"}


def wait_live(url: str, child: Child, log: Path, timeout: float = 60) -> None:
    """Wait until the service `child` started answers /health/live (its log on failure)."""

    def live() -> bool:
        assert child.running(), log.read_text()
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(live, timeout=timeout, interval=0.1, what=f"{url} live (log: {log})")


def signing_keys() -> SigningKeys:
    """The keys every worker and algorithm service of the session holds (tests/conftest.py)."""
    return SigningKeys.from_secrets(os.environ["MODEL_SIGNING_KEY"].split(","))
