"""The registry-to-serving protocol in Redis: what should be served, and what each replica serves.

PostgreSQL's alias table is the truth; Redis carries it to the processes. Whoever moves an alias
SETs the desired state (`DESIRED_KEY`, no TTL) and then PUBLISHes the same JSON on
`CHANGED_CHANNEL`, in one MULTI so a subscriber woken by the message finds the key already set.
Each algorithm process writes its own report (`textclf:serving:<host>:<pid>`) with a short TTL,
so a replica that dies disappears from the reports within `REPORT_TTL_SECONDS`.

Every model name has its own desired state (`desired_key(model)`; `default`'s is `DESIRED_KEY`,
as before names existed) and every announcement carries its name; a replica's report says what it
serves of every model it has loaded (`models`), its top-level fields mirroring `default`. A name
without a desired key is unknown to the serving processes (web announces every registered name,
champion or not); `default` is always known.

Declared once, here: web (after an alias move), the worker (after a promotion) and the algorithm
processes (following and reporting) all use these functions. Since an announcement can be lost
(Redis down at the time, or restarted empty), web's processes also compare the registry with the
key every second and announce again where Redis is behind (`announce_if_behind`).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

import redis
from pydantic import BaseModel, Field, ValidationError

from core.model_names import DEFAULT_MODEL

DESIRED_KEY = "textclf:registry:desired"
CHANGED_CHANNEL = "textclf:registry:changed"
REPORT_KEY_PREFIX = "textclf:serving:"
REPORT_TTL_SECONDS = 15
REPORT_INTERVAL_SECONDS = 5  # well inside the TTL: one missed beat does not hide a replica


class Desired(BaseModel):
    """The versions of one model every replica should serve; `seq` increases with every change."""

    model: str = DEFAULT_MODEL
    champion: str | None
    challenger: str | None = None
    seq: int
    moved_at: str = Field(default_factory=lambda: utc_now())


class ShadowCounts(BaseModel):
    compared: int = 0
    agreed: int = 0


class ModelReport(BaseModel):
    """What one replica serves of one model it has loaded."""

    version: str | None  # the champion it serves
    challenger: str | None = None  # the challenger it has loaded for shadow scoring
    error: str | None = None  # the last load error, None once a load succeeded
    error_version: str | None = None
    loaded_at: str | None = None
    memory_bytes: int | None = None  # what the model takes in this process, as measured at load
    last_used_at: str | None = None
    pinned: bool = False  # never unloaded (MODEL_PINNED)
    shadow: ShadowCounts = ShadowCounts()  # agreement with its challenger, while it has one


class ReplicaReport(BaseModel):
    """What one algorithm process serves, and why not the desired version if it failed to load.

    The top-level fields are `default`'s (as before names existed); `models` has every model the
    process holds, `default` included once loaded, each with its own shadow counts.
    """

    replica: str
    version: str | None  # the champion it serves
    challenger: str | None = None  # the challenger it has loaded for shadow scoring
    error: str | None = None  # the last load error, None once a load succeeded
    error_version: str | None = None
    loaded_at: str | None = None
    shadow: ShadowCounts = ShadowCounts()
    models: dict[str, ModelReport] = Field(default_factory=dict)
    memory_budget_bytes: int | None = None  # MODEL_MEMORY_BUDGET_MB, None when unbounded
    rss_bytes: int | None = None  # the process's resident memory when it reported


def utc_now() -> str:
    """The protocol's timestamp format: ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat()


def replica_name() -> str:
    """This process's replica name: `<hostname>:<pid>`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def report_key(replica: str) -> str:
    return f"{REPORT_KEY_PREFIX}{replica}"


def desired_key(model: str = DEFAULT_MODEL) -> str:
    """Where `model`'s desired state is kept (`default`'s where it was before names existed)."""
    return DESIRED_KEY if model == DEFAULT_MODEL else f"{DESIRED_KEY}:{model}"


def served_version(found: ReplicaReport, model: str = DEFAULT_MODEL) -> str | None:
    """The version of `model` a replica serves, None when it has not loaded that model."""
    if model in found.models:
        return found.models[model].version
    return found.version if model == DEFAULT_MODEL else None


def parse_desired(raw: str | bytes | None) -> Desired | None:
    """The desired state from its JSON, or None when absent or malformed (never raises)."""
    if raw is None:
        return None
    try:
        return Desired.model_validate_json(raw)
    except ValidationError:
        return None


def parse_report(raw: str | bytes | None) -> ReplicaReport | None:
    """A replica's report from its JSON, or None when absent (expired) or malformed."""
    if raw is None:
        return None
    try:
        return ReplicaReport.model_validate_json(raw)
    except ValidationError:
        return None


def announce(client: redis.Redis, desired: Desired) -> None:
    """Store the desired state and tell every subscriber, in one transaction."""
    payload = desired.model_dump_json()
    with client.pipeline(transaction=True) as pipe:
        pipe.set(desired_key(desired.model), payload)
        pipe.publish(CHANGED_CHANNEL, payload)
        pipe.execute()


def is_behind(announced: Desired | None, registry: Desired) -> bool:
    """Whether what Redis announces must be replaced by the registry's state `registry`.

    Nothing announced is behind unless the registry names nothing either (then replicas follow
    `current`, as before any announcement), except for a name other than `default`: its key is
    how the serving processes know the name exists. An announcement with a higher `seq` was read
    from the registry after `registry` was: it wins, and the next look reads the registry again.
    """
    if announced is None:
        if registry.model != DEFAULT_MODEL:
            return True
        return registry.champion is not None or registry.challenger is not None
    if announced.seq > registry.seq:
        return False
    return (announced.champion, announced.challenger) != (registry.champion, registry.challenger)


def announce_if_behind(client: redis.Redis, registry: Desired) -> bool:
    """Announce the registry's state unless Redis already says it (or newer); True if announced.

    A compare-and-set (WATCH on the key): several processes reconciling at once announce at most
    what the registry says, and never overwrite an announcement newer than their own read.
    """
    key = desired_key(registry.model)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if not is_behind(parse_desired(pipe.get(key)), registry):
                return False
            payload = registry.model_dump_json()
            pipe.multi()
            pipe.set(key, payload)
            pipe.publish(CHANGED_CHANNEL, payload)
            pipe.execute()
        except redis.WatchError:
            return False  # someone announced meanwhile; the next look compares again
    return True


def read_desired(client: redis.Redis, model: str = DEFAULT_MODEL) -> Desired | None:
    """`model`'s desired state, or None when nobody announced one yet (fresh install, Redis
    flushed; for a name other than `default`, also: no such name)."""
    return parse_desired(client.get(desired_key(model)))


def read_many_desired(client: redis.Redis, models: list[str]) -> dict[str, Desired | None]:
    """The desired state of each of `models` (one MGET)."""
    if not models:
        return {}
    raws = client.mget([desired_key(model) for model in models])
    return {model: parse_desired(raw) for model, raw in zip(models, raws, strict=True)}


def report(client: redis.Redis, replica_report: ReplicaReport) -> None:
    """Write one replica's report; it expires unless rewritten within `REPORT_TTL_SECONDS`."""
    client.set(
        report_key(replica_report.replica),
        replica_report.model_dump_json(),
        ex=REPORT_TTL_SECONDS,
    )


def read_reports(client: redis.Redis) -> list[ReplicaReport]:
    """The reports of every live replica, by replica name."""
    keys = sorted(client.scan_iter(match=f"{REPORT_KEY_PREFIX}*", count=100))
    if not keys:
        return []
    reports = (parse_report(raw) for raw in client.mget(keys))
    return [found for found in reports if found is not None]


def all_serve(reports: list[ReplicaReport], version: str, model: str = DEFAULT_MODEL) -> bool:
    """True when every reporting replica that holds `model` serves `version` (vacuously true).

    Every replica holds `default`; another model only where it was asked for (a replica that
    has not loaded it will load the registry's champion on its first request).
    """
    holding = (
        reports if model == DEFAULT_MODEL else [found for found in reports if model in found.models]
    )
    return all(served_version(found, model) == version for found in holding)


def wait_until_served(
    client: redis.Redis, version: str, timeout: float, model: str = DEFAULT_MODEL
) -> bool:
    """Wait until every live replica holding `model` serves `version`; False on timeout.

    No live replica counts as served: there is nobody to wait for.
    """
    deadline = time.monotonic() + timeout
    while True:
        if all_serve(read_reports(client), version, model):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
