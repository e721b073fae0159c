"""A cold named model's first answer: how long the first prediction of a name not yet loaded takes.

For each fresh name, a version is published and announced (the name becomes known to the
algorithm service, nothing loads it), the bench waits `SETTLE_SECONDS` as a user would between
training and predicting, then times the first `POST /predict {"model": name, ...}` from sending
to a 200: the serving process loads the champion while the request waits (up to
MODEL_LOAD_WAIT_SECONDS). Should it answer otherwise first (503 `model_loading`, 404 while the
name is still unknown to it), the request is sent again every `RETRY_SECONDS` and the time runs
to the first 200, every status seen being reported. Just before the first request the replicas'
reports are read (`loaded_before`): a name some process had already loaded would not be a cold
start, and the report says so. The next answers of the same name are timed too, as the warm
reference.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import httpx

SETTLE_SECONDS = 1.0
RETRY_SECONDS = 0.05
GIVE_UP_SECONDS = 60.0
WARM_ANSWERS = 5


@dataclass(frozen=True)
class ColdStart:
    """One fresh name: its first answer's time, the statuses before it, the warm answers' time."""

    model: str
    version: str
    first_answer_s: float
    statuses: list[int]  # every answer until the first 200, that one included
    warm_ms: float  # median time of the next answers
    loaded_before: bool  # whether a replica reported the name loaded before the first request


@dataclass
class ColdStartResult:
    names: list[ColdStart] = field(default_factory=list)

    @property
    def first_answer_s(self) -> float | None:
        """The median first answer time over the fresh names."""
        return statistics.median(n.first_answer_s for n in self.names) if self.names else None

    @property
    def warm_ms(self) -> float | None:
        return statistics.median(n.warm_ms for n in self.names) if self.names else None

    def as_dict(self) -> dict[str, object]:
        return {"names": [asdict(name) for name in self.names], "median_s": self.first_answer_s}


def _post(client: httpx.Client, url: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    status = client.post(url, content=body).status_code
    return status, time.perf_counter() - started


def first_answer(
    url: str,
    *,
    headers: Mapping[str, str],
    model: str,
    version: str,
    text: str,
    loaded: Callable[[str], bool],
) -> ColdStart:
    """Time the first prediction of `model` (published, announced, not loaded) until a 200."""
    body = json.dumps({"model": model, "text": text}).encode()
    statuses: list[int] = []
    loaded_before = loaded(model)
    with httpx.Client(
        headers={**headers, "Content-Type": "application/json"}, timeout=GIVE_UP_SECONDS
    ) as client:
        started = time.perf_counter()
        while True:
            status, _ = _post(client, url, body)
            statuses.append(status)
            if status == 200:
                break
            if time.perf_counter() - started > GIVE_UP_SECONDS:
                raise RuntimeError(f"{model}: no 200 within {GIVE_UP_SECONDS:g} s: {statuses}")
            time.sleep(RETRY_SECONDS)
        first = time.perf_counter() - started
        warm = [_post(client, url, body)[1] for _ in range(WARM_ANSWERS)]
    return ColdStart(model, version, first, statuses, statistics.median(warm) * 1000, loaded_before)


def measure_cold_starts(
    url: str,
    *,
    headers: Mapping[str, str],
    publish: Callable[[str], str],
    loaded: Callable[[str], bool],
    names: list[str],
    text: str,
) -> ColdStartResult:
    """For each name: `publish(name)` (returns the version it announced), settle, first answer;
    `loaded(name)`: whether a serving process reports the name loaded."""
    result = ColdStartResult()
    for name in names:
        version = publish(name)
        time.sleep(SETTLE_SECONDS)
        result.names.append(
            first_answer(
                url, headers=headers, model=name, version=version, text=text, loaded=loaded
            )
        )
    return result


def cold_start_text(result: ColdStartResult) -> str:
    """The markdown paragraph of the bench's report."""
    lines = [
        f"Each name published and announced, not loaded; after {SETTLE_SECONDS:g} s, one "
        '`POST /predict {"model": name, "text": ...}` to the algorithm service, timed to its '
        f"first 200 (retried every {RETRY_SECONDS * 1000:g} ms on any other answer); then "
        f"{WARM_ANSWERS} more of the same name (warm):",
        "",
    ]
    for name in result.names:
        lines.append(
            f"- `{name.model}` ({name.version}): first answer {name.first_answer_s:.2f} s "
            f"(statuses {', '.join(map(str, name.statuses))}); warm {name.warm_ms:.1f} ms"
            + ("; NOT COLD: a replica had loaded it already" if name.loaded_before else "")
        )
    return "\n".join(lines)
