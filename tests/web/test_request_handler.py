"""web's request handler: no thread started per request, the request signals still sent.

In-process (`web.asgi.application`, httpx's ASGI transport), the algorithm service played at the
network edge. Threads are counted where they start (`threading.Thread.start`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.web.conftest import InProcessWeb

REQUESTS = 12


def labelled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"labels": ["short"], "model_version": "v1"})


@pytest.fixture
def started_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads started while the test runs."""
    names: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        names.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    yield names


def predictions(count: int) -> list[dict[str, Any]]:
    return [{"method": "POST", "url": "/api/predict/", "json": {"text": "x"}}] * count


def test_predictions_start_no_thread_and_data_reads_reuse_one(
    web_as: Callable[[str | None], InProcessWeb], started_threads: list[str]
) -> None:
    web = web_as("editor")
    web.send(labelled, *predictions(1), {"method": "GET", "url": "/api/data/"})  # warmed up
    started_threads.clear()
    answers = web.send(labelled, *predictions(REQUESTS))
    assert {answer.status_code for answer in answers} == {200}
    assert [name for name in started_threads if name.startswith("web-request")] == []

    reads = web.send(labelled, *[{"method": "GET", "url": "/api/data/"}] * REQUESTS)
    assert {answer.status_code for answer in reads} == {200}
    # Django's own handler starts two threads per request (its executor and the join).
    assert len(started_threads) <= 1, started_threads


def test_a_receiver_not_known_to_be_safe_still_hears_every_request(
    web_as: Callable[[str | None], InProcessWeb],
) -> None:
    from django.core import signals

    from web.edge.request_handler import PooledThreadHandler

    heard: list[tuple[str, bool]] = []

    def note_finished(sender: Any, **kwargs: Any) -> None:
        heard.append(("finished", threading.current_thread() is threading.main_thread()))

    signals.request_finished.connect(note_finished)
    try:
        handler = PooledThreadHandler()  # checks the receivers as it starts
        assert not handler.inline_signals
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/health/live"}
        scope |= {"headers": [], "query_string": b"", "server": ("127.0.0.1", 80)}

        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client stays until the answer is sent
            raise AssertionError("unreachable")

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(handler(scope, receive, send))
    finally:
        signals.request_finished.disconnect(note_finished)
    assert sent[0]["status"] == 200
    assert heard == [("finished", False)]  # sent, and from a thread, as Django does
