"""web's one way to the algorithm service: a shared httpx.AsyncClient per process.

The client is opened at ASGI start-up and closed at shutdown (see web/asgi.py). It keeps
connections alive, bounds every call with explicit timeouts, and retries only connection errors
(exponential backoff with jitter): a request that may have reached the service is never sent
twice, except one that is harmless to repeat (a GET, a prediction) when the service closed the
connection before answering (a replica stopping). Calls are spread over every address of the
service's name, a retry going to another one (web/proxy/balancer.py). Failures raise the
service's own `AlgorithmUnavailable` (503) or `AlgorithmTimeout` (504).
Every call carries web's service token; a service that refuses it is a configuration error of
ours, answered as 503 (never passed on as the caller's 401) and logged without the token.

Concurrent single-text predictions are coalesced per model name: while one call for a name is
in flight, new texts for that name wait and go together in its next `{"texts": [...]}` call, so
one HTTP hop serves many requests and never mixes two models' texts. Each call leaves one turn
of the event loop after the texts it found, so requests the loop woke meanwhile join it.
`default`'s calls name no model (the service's default), so its body is the same as before
names existed.

Every call carries the current request's `X-Request-ID`; a coalesced call carries the id of the
first request in its batch (its log lines on the algorithm side name that request). A training
call also says who asked (`X-Requested-By`, see `requester_headers`) for the registry's run row.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_aiohttp import AiohttpTransport

from core.jobs import REQUESTED_BY_HEADER, REQUESTED_BY_MAX_CHARS
from core.logs import REQUEST_ID, REQUEST_ID_HEADER
from core.model_names import DEFAULT_MODEL
from web.edge.observability import record_algorithm_call, record_coalesced_batch
from web.errors import AlgorithmTimeout, AlgorithmUnavailable
from web.proxy.balancer import (
    BalancedTransport,
    Resolver,
    connection_failed,
    dropped_without_answer,
)

log = logging.getLogger(__name__)
_SAFE_IN_REQUESTED_BY = ":@/+=!$&'()*,;"  # besides letters, digits and "_.-~"


def requester_headers(actor: str | None) -> dict[str, str]:
    """`X-Requested-By` naming actor, percent-encoded UTF-8 (cut whole characters to fit)."""
    encoded = ""
    for char in actor or "":
        piece = quote(char, safe=_SAFE_IN_REQUESTED_BY)
        if len(encoded) + len(piece) > REQUESTED_BY_MAX_CHARS:
            break
        encoded += piece
    return {REQUESTED_BY_HEADER: encoded} if encoded else {}


# Calls without side effects: sent again when a connection was dropped before any answer.
_RESEND_SAFE_METHODS = frozenset({"GET", "HEAD"})
_RESEND_SAFE_POSTS = ("/predict", "/infer")


def _resend_safe(method: str, path: str) -> bool:
    return method in _RESEND_SAFE_METHODS or (
        method == "POST" and path.endswith(_RESEND_SAFE_POSTS)
    )


def _dropped_or_never_reached(exc: BaseException) -> bool:
    return connection_failed(exc) or dropped_without_answer(exc)


def _backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt `attempt` (1, 2, ...): exponential from 50 ms, jittered
    by up to 50 ms, at most 0.5 s."""
    return min(0.05 * 2 ** (attempt - 1) + random.uniform(0, 0.05), 0.5)


URLS_KEPT = 64


@dataclass(frozen=True)
class AlgorithmAnswer:
    status: int
    body: Any
    headers: httpx.Headers
    # `body` encoded as web answers it (json.dumps), when that is done already: the answers of a
    # coalesced call are encoded once per label, not once per request.
    content: bytes | None = None


Pending = tuple[str, "asyncio.Future[AlgorithmAnswer]", str | None]  # text, its waiter, request id


class AlgorithmClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_retries: int,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        batch_max_texts: int = 256,
        batch_max_chars: int = 1_000_000,
        resolve_seconds: float = 5.0,
        connection_max_seconds: float = 30.0,
        resolver: Resolver | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport
            or BalancedTransport(
                _keep_alive_transport,
                resolve_seconds=resolve_seconds,
                connection_max_seconds=connection_max_seconds,
                retire_after_seconds=timeout + 5,
                **({"resolver": resolver} if resolver else {}),
            ),
        )
        self._connect_retries = connect_retries
        self._batch_max_texts = batch_max_texts
        # Keeps a coalesced body far below the service's size limit, so one caller's long text
        # never gets other callers' predictions refused with 413.
        self._batch_max_chars = batch_max_chars
        # Per model name, the texts waiting for the next call and the task sending them; an
        # entry lives only while a name has texts in flight, so unknown names cannot pile up.
        self._pending: dict[str, list[Pending]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._urls: dict[str, httpx.URL] = {}

    async def call(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> AlgorithmAnswer:
        """One request (with the request id and any extra headers), retried on connect errors."""
        started = time.perf_counter()
        try:
            answer = await self._call(method, path, json=json, headers=headers or {})
        except AlgorithmUnavailable as exc:
            outcome = "timeout" if isinstance(exc, AlgorithmTimeout) else "unavailable"
            record_algorithm_call(outcome, time.perf_counter() - started)
            raise
        outcome = "ok" if answer.status < 400 else f"status_{answer.status // 100}xx"
        record_algorithm_call(outcome, time.perf_counter() - started)
        return answer

    async def _call(
        self, method: str, path: str, *, json: Any, headers: dict[str, str]
    ) -> AlgorithmAnswer:
        request_id = REQUEST_ID.get()
        if request_id:
            headers = {**headers, REQUEST_ID_HEADER: request_id}
        # Retrying cannot send a request twice that is not harmless to repeat.
        retryable = _dropped_or_never_reached if _resend_safe(method, path) else connection_failed
        url = self._url(path)
        try:
            for attempt in itertools.count(1):
                # A new request per attempt: the balancer points each one at an address.
                request = self._client.build_request(method, url, json=json, headers=headers)
                try:
                    response = await self._client.send(request)
                    break
                except Exception as exc:
                    if attempt > self._connect_retries or not retryable(exc):
                        raise
                await asyncio.sleep(_backoff_seconds(attempt))
        except httpx.HTTPError as exc:
            if _dropped_or_never_reached(exc) or not isinstance(exc, httpx.TimeoutException):
                raise AlgorithmUnavailable(f"The algorithm service is unreachable: {exc}") from exc
            raise AlgorithmTimeout() from exc
        try:
            body = response.json()
        except ValueError:
            raise AlgorithmUnavailable(
                f"The algorithm service answered {response.status_code} without JSON."
            ) from None
        if response.status_code == 401:
            log.error(
                "the algorithm service refused web's service token: ALGORITHM_TOKEN must be one "
                "of its ALGORITHM_TOKENS"
            )
            raise AlgorithmUnavailable("The algorithm service refused this server's credentials.")
        if response.status_code >= 500 and not (isinstance(body, dict) and "error" in body):
            raise AlgorithmUnavailable(f"The algorithm service failed ({response.status_code}).")
        return AlgorithmAnswer(response.status_code, body, response.headers)

    def _url(self, path: str) -> httpx.URL:
        """`path` under the service's base URL, as httpx joins them (kept: a join costs more
        than the rest of building a request)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= URLS_KEPT:  # job paths vary: keep the few in use
                self._urls.clear()
            url = self._urls[path] = self._client.build_request("GET", path).url
        return url

    async def predict_one(self, text: str, model: str = DEFAULT_MODEL) -> AlgorithmAnswer:
        """Predict one text with `model`, sharing the HTTP call with concurrent requests."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AlgorithmAnswer] = loop.create_future()
        pending = self._pending.get(model)
        if pending is None:
            pending = self._pending[model] = []
        pending.append((text, future, REQUEST_ID.get()))
        sender = self._senders.get(model)
        if sender is None or sender.done():
            self._senders[model] = loop.create_task(self._send_pending(model, pending))
        return await future

    async def _send_pending(self, model: str, pending: list[Pending]) -> None:
        try:
            while pending:
                # One turn of the loop first: requests it has already woken reach predict_one
                # and share this call (about 25 texts a call instead of 16 at 64 connections
                # on a saturated core; a call costs web ~500 us of CPU whatever its size).
                await asyncio.sleep(0)
                await self._send_batch(model, self._take_batch(pending))
        finally:  # nothing awaited since `pending` was seen empty: no text is left behind
            if not pending:
                del self._pending[model]
                del self._senders[model]

    async def _send_batch(self, model: str, batch: list[Pending]) -> None:
        record_coalesced_batch(len(batch))
        REQUEST_ID.set(batch[0][2])  # this task's own context: the call names the first
        try:
            texts = [text for text, *_ in batch]
            body = {"texts": texts} if model == DEFAULT_MODEL else {"model": model, "texts": texts}
            answer = await self.call("POST", "/predict", json=body)
            results = _split_batch_answer(answer, len(batch))
        except Exception as exc:  # whatever went wrong, every waiter gets an answer
            error = (
                exc
                if isinstance(exc, AlgorithmUnavailable)
                else AlgorithmUnavailable(f"The prediction could not be forwarded: {exc!r}")
            )
            results = None
        for index, (_, future, _) in enumerate(batch):
            if future.done():
                continue
            if results is None:
                future.set_exception(error)
            else:
                future.set_result(results[index])

    def _take_batch(self, pending: list[Pending]) -> list[Pending]:
        """The next waiters, bounded by text count and total characters (at least one)."""
        size, chars = 0, 0
        for text, *_ in pending[: self._batch_max_texts]:
            if size and chars + len(text) > self._batch_max_chars:
                break
            size, chars = size + 1, chars + len(text)
        batch = pending[:size]
        del pending[:size]
        return batch

    async def aclose(self) -> None:
        if self._senders:
            await asyncio.gather(*self._senders.values(), return_exceptions=True)
        await self._client.aclose()


def _split_batch_answer(answer: AlgorithmAnswer, size: int) -> list[AlgorithmAnswer]:
    """One answer per text of a coalesced call; an error answer is everyone's answer."""
    if answer.status != 200:
        return [answer] * size
    labels, version = answer.body["labels"], answer.body["model_version"]
    if len(labels) != size:
        raise AlgorithmUnavailable(
            f"The algorithm service returned {len(labels)} labels for {size}."
        )
    by_label: dict[str, AlgorithmAnswer] = {}  # answers are frozen: requests share them

    def answer_for(label: Any) -> AlgorithmAnswer:
        found = by_label.get(label) if isinstance(label, str) else None
        if found is None:
            body = {"label": label, "model_version": version}
            found = AlgorithmAnswer(200, body, answer.headers, json.dumps(body).encode())
            if isinstance(label, str):
                by_label[label] = found
        return found

    return [answer_for(label) for label in labels]


def _keep_alive_transport() -> httpx.AsyncBaseTransport:
    """One address's keep-alive pool.

    An idle connection is let go before the service's own idle time (its HEADER_TIMEOUT_SECONDS,
    5 s by default) runs out: a request never goes out on a connection the service is closing
    at that moment.
    """
    return AiohttpTransport(limits=httpx.Limits(max_connections=64, keepalive_expiry=4))


_client: AlgorithmClient | None = None


def install(client: AlgorithmClient | None) -> None:
    """Make `client` the process's client (done at start-up; tests install their own)."""
    global _client
    _client = client


def get_client() -> AlgorithmClient:
    if _client is None:
        raise AlgorithmUnavailable("The algorithm client is not started.")
    return _client
