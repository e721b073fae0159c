"""Hot swap under load: publish a new model version while 64 clients keep predicting.

The clients read every answer body, so the report can say when the new `model_version` took
over: the swap time runs from the moment publication finished (`current` switched) to the last
answer that still came from the old version (or the first from the new one, if later). Any
answer outside 2xx, any connection error and any unknown version counts as a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from httpx_aiohttp import AiohttpTransport


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    version: str | None  # None when the request failed
    error: str | None = None


@dataclass(frozen=True)
class HotSwapResult:
    requests: int
    failures: int
    failure_examples: list[str]
    old_version: str
    new_version: str
    publish_seconds: float  # how long publishing took (pickles written, fsynced, link switched)
    first_new_after_s: float | None  # first answer by the new version, after publication
    last_old_after_s: float | None  # last answer by the old version, after publication
    answers_per_second: float

    @property
    def swap_seconds(self) -> float | None:
        """Publication to the point after which only the new version answers (None: never)."""
        if self.first_new_after_s is None:
            return None
        return max(self.first_new_after_s, self.last_old_after_s or 0.0)

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "swap_seconds": self.swap_seconds}


async def _predict_until(
    client: httpx.AsyncClient,
    url: str,
    bodies: Sequence[bytes],
    *,
    first: int,
    stop_at: float,
    answers: list[Answer],
    headers: dict[str, str],
) -> None:
    for body in itertools.islice(itertools.cycle(bodies), first, None):
        sent = time.monotonic()
        if sent >= stop_at:
            return
        try:
            response = await client.post(url, content=body, headers=headers)
            received = time.monotonic()
            if response.status_code == 200:
                answers.append(Answer(sent, received, str(response.json()["model_version"])))
            else:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                answers.append(Answer(sent, received, None, error))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            answers.append(Answer(sent, time.monotonic(), None, repr(exc)))


async def measure_hot_swap(
    url: str,
    *,
    publish: Callable[[], str],
    bodies: Sequence[bytes],
    connections: int = 64,
    seconds: float = 8.0,
    publish_after: float = 3.0,
    headers: Mapping[str, str] | None = None,
) -> HotSwapResult:
    """Predict on `connections` connections; call `publish` (returns the new version) meanwhile.

    `headers` go with every request (the algorithm service's token).
    """
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = AiohttpTransport(limits=limits, trust_env=False)
    answers: list[Answer] = []
    async with httpx.AsyncClient(transport=transport, timeout=10.0, trust_env=False) as client:
        started = time.monotonic()
        stop_at = started + seconds
        tasks = [
            asyncio.create_task(
                _predict_until(
                    client,
                    url,
                    bodies,
                    first=i,
                    stop_at=stop_at,
                    answers=answers,
                    headers=request_headers,
                )
            )
            for i in range(connections)
        ]
        await asyncio.sleep(publish_after)
        publish_started = time.monotonic()
        new_version = await asyncio.to_thread(publish)
        published = time.monotonic()
        await asyncio.gather(*tasks)
        finished = time.monotonic()
    return summarize(
        answers,
        new_version=new_version,
        publish_started=publish_started,
        published=published,
        elapsed=finished - started,
    )


def summarize(
    answers: Sequence[Answer],
    *,
    new_version: str,
    publish_started: float,
    published: float,
    elapsed: float,
) -> HotSwapResult:
    """Count failures and find when the new version took over."""
    before = Counter(a.version for a in answers if a.version and a.received < publish_started)
    old_version = before.most_common(1)[0][0] if before else ""
    known = {old_version, new_version}
    failures = [a for a in answers if a.version is None or a.version not in known]
    examples = sorted({a.error or f"unexpected version {a.version}" for a in failures})[:5]
    new_times = [a.received - published for a in answers if a.version == new_version]
    old_times = [
        a.received - published
        for a in answers
        if a.version == old_version and a.received > published
    ]
    return HotSwapResult(
        requests=len(answers),
        failures=len(failures),
        failure_examples=examples,
        old_version=old_version,
        new_version=new_version,
        publish_seconds=published - publish_started,
        first_new_after_s=max(0.0, min(new_times)) if new_times else None,
        last_old_after_s=max(old_times) if old_times else None,
        answers_per_second=len(answers) / elapsed if elapsed > 0 else 0.0,
    )
