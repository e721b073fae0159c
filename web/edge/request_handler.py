"""Django's ASGI handler without a thread start per request.

Django's `ASGIHandler` enters a fresh `ThreadSensitiveContext` per request: asgiref starts a
thread for its sync work (the `request_started` / `request_finished` receivers, sync views) and
a second one that joins it at the end. `PooledThreadHandler` lends each request one
single-thread executor from a per-process pool instead (asgiref's
`ThreadSensitiveContext(executor=...)`): its thread is started the first time it is needed and
then reused, so a data-API request costs a thread hop, not a thread start. When every connected
receiver is one known to be safe on the event loop's thread (checked once, at start-up), they
run inline; if the request ran sync code in its lent thread (a sync view, a cache miss of the
token check), `request_finished` still runs there, as Django would, so that thread's database
connection goes back to the pool at the request's end. An async view (the predict path) then
never leaves the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.dispatch import Signal
from django.urls import set_script_prefix

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

logger = logging.getLogger(__name__)

# Receivers that touch only the state of the thread that calls them. On the event loop's thread
# that is nothing: Django refuses sync database access there, so it never opens a connection,
# and the default local-memory cache has nothing to close.
INLINE_SAFE_RECEIVERS = frozenset(
    {
        "django.db.reset_queries",
        "django.db.close_old_connections",
        "django.core.cache.close_caches",
        "django.core.handlers.base.reset_urlconf",  # the thread's urlconf back to the default
    }
)
# Idle threads kept per process; one more is started only while this many requests run sync code.
IDLE_THREADS_KEPT = 16


class LentExecutor(ThreadPoolExecutor):
    """One thread, lent to one request at a time; knows whether the request used it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="web-request")
        self.used = False
        self._last: Future[Any] | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.used = True
        self._last = super().submit(fn, *args, **kwargs)
        return self._last

    def busy(self) -> bool:
        """Whether a call still runs or waits (one thread: the last one ends after the others)."""
        return self._last is not None and not self._last.done()


class ExecutorPool:
    """Idle single-thread executors of one process, lent and given back on the loop's thread."""

    def __init__(self, keep: int = IDLE_THREADS_KEPT) -> None:
        self._idle: list[LentExecutor] = []
        self._keep = keep

    def lend(self) -> LentExecutor:
        executor = self._idle.pop() if self._idle else LentExecutor()
        executor.used = False
        return executor

    def give_back(self, executor: LentExecutor) -> None:
        # Work still running (a view cancelled mid-call) would delay the next request: let it end.
        if executor.busy() or len(self._idle) >= self._keep:
            executor.shutdown(wait=False)
        else:
            self._idle.append(executor)


def receiver_names(signal: Signal, sender: type) -> set[str]:
    sync_receivers, async_receivers = signal._live_receivers(sender)
    return {f"{r.__module__}.{r.__qualname__}" for r in [*sync_receivers, *async_receivers]}


_LENT: contextvars.ContextVar[LentExecutor] = contextvars.ContextVar("web_lent_executor")


class PooledThreadHandler(ASGIHandler):
    """ASGIHandler with pooled request threads and, where safe, the request signals inline."""

    def __init__(self) -> None:
        super().__init__()
        self.executors = ExecutorPool()
        unsafe = {
            name
            for signal in (signals.request_started, signals.request_finished)
            for name in receiver_names(signal, type(self))
        } - INLINE_SAFE_RECEIVERS
        self.inline_signals = not unsafe
        if unsafe:
            logger.info("request signals run in the request's thread: %s", sorted(unsafe))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.executors.lend()
        token = _LENT.set(executor)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _LENT.reset(token)
            self.executors.give_back(executor)

    def _inline(self) -> bool:
        """Whether the signals may run on the loop: allowed receivers, lent thread unused."""
        return self.inline_signals and not _LENT.get().used

    async def _request_started(self, scope: dict[str, Any]) -> None:
        if self._inline():
            signals.request_started.send(sender=self.__class__, scope=scope)
        else:
            await signals.request_started.asend(sender=self.__class__, scope=scope)

    async def _close(self, response: Any) -> None:
        if self._inline():
            response.close()  # sends request_finished
        else:
            await sync_to_async(response.close)()

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Django 5.2's `ASGIHandler.handle`, with the two signal sends above."""
        if not self.inline_signals:
            await super().handle(scope, receive, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await self._request_started(scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await self._close(error_response)
            return
        await self.respond(request, receive, send, body_file)
        body_file.close()

    async def respond(self, request: Any, receive: Receive, send: Send, body_file: Any) -> None:
        """Run the request and send its answer, raced against the client's disconnect."""

        async def process_request() -> Any:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left meanwhile
                await self.send_response(response, send)
            return response

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            if self._inline():
                signals.request_finished.send(sender=self.__class__)
            else:
                await signals.request_finished.asend(sender=self.__class__)
        else:
            await self._close(response)
