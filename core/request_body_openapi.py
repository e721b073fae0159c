"""What the body layer (core/request_body.py) answers, declared on OpenAPI operations.

Both services put the layer in front of every route, a GET's included, so every operation may
answer 413 (a body too large for the route), 408 (a body that does not arrive in time) and 503
(beyond the bodies the process may hold at once, with Retry-After). Each service names the error
codes in its own words and error shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = "application/json"


@dataclass(frozen=True)
class BodyRefusals:
    """A service's descriptions of the three answers, and the error code its 503 carries."""

    too_large: str
    too_slow: str
    busy: str
    busy_code: str


def declare_body_refusals(
    responses: dict[str, Any],
    refusals: BodyRefusals,
    *,
    error_schema: dict[str, Any],
    retry_after: dict[str, Any],
) -> None:
    """Add the layer's answers to an operation's `responses`, beside its own 503 if it has one."""

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {JSON: {"schema": error_schema}}}

    responses.setdefault("413", error(refusals.too_large))
    responses.setdefault("408", error(refusals.too_slow))
    busy = responses.get("503")
    if busy is None:
        busy = error(refusals.busy)
    elif refusals.busy_code not in busy["description"]:
        busy = {**busy, "description": f"{busy['description']}; or {refusals.busy}"}
        schema = busy.get("content", {}).get(JSON, {}).get("schema")
        if schema is not None and schema != error_schema:  # e.g. readiness's own answer
            busy["content"] = {JSON: {"schema": {"anyOf": [schema, error_schema]}}}
    responses["503"] = {**busy, "headers": {**busy.get("headers", {}), "Retry-After": retry_after}}
