"""One long-lived event loop per process for Flask's `async def` views.

Flask runs each async view through `asgiref.async_to_sync`, which builds a new event loop per
request. `LoopThread` keeps one loop running in a daemon thread instead; `LongLivedLoopFlask`
submits every async view to it, so views can share loop-bound state (the micro-batcher) and skip
the per-request loop start-up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flask import Flask

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever in its own thread until `stop()`."""

    def __init__(self, name: str = "async-views") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(
        self, coroutine: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> T:
        """Run `coroutine` on the loop, in `context`, and wait for its result (any thread)."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def copy_outcome(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                result.cancel()
            elif (error := task.exception()) is not None:
                result.set_exception(error)
            else:
                result.set_result(task.result())

        def start() -> None:
            self.loop.create_task(coroutine, context=context).add_done_callback(copy_outcome)

        self.loop.call_soon_threadsafe(start)
        return result.result()

    def stop(self) -> None:
        """Cancel what is left and stop the loop thread."""
        if not self.loop.is_running():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class LongLivedLoopFlask(Flask):
    """Flask whose async views all run on one `LoopThread`."""

    loop_thread: LoopThread

    def async_to_sync(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        loop_thread = self.loop_thread

        def run(*args: Any, **kwargs: Any) -> Any:
            # The caller's context carries Flask's request and app context into the loop.
            return loop_thread.run(func(*args, **kwargs), contextvars.copy_context())

        return run

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(func):
            return self.async_to_sync(func)
        return func
