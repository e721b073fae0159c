"""A request body read at the ASGI layer within a size cap and a deadline, before any framework.

Both services wrap the server's `receive` in `BoundedBody` for every request that has a body, so
neither Django (which would spool it to a temporary file) nor Flask ever holds more than the
route's cap: a `Content-Length` over the cap is refused before a byte is read, a chunked body as
soon as it passes the cap, and a body still incomplete at its deadline is refused too; the bodies
a process receives at once share a budget (503 beyond it). The caller answers the refusal (413,
408 or 503) in its own error shape; the server then closes the connection, since the rest of the
body was never read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyRefused(Exception):
    """The body is not read further; `status` is how the refusal is answered."""

    status = 400


class BodyTooLarge(BodyRefused):
    status = 413

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The body is larger than this route accepts (at most {max_bytes} bytes).")
        self.max_bytes = max_bytes


class BodyOverBudget(BodyRefused):
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "This server process holds as many incoming bodies as it may; retry in a second."
        )


class BodyTooSlow(BodyRefused):
    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The body did not arrive within {seconds:g} s; the connection is closed. "
            "Send the whole body at once."
        )
        self.seconds = seconds


def has_body(scope: dict[str, Any]) -> bool:
    """Whether the request may have a body: HTTP/1 announces one in its headers (a non-zero
    Content-Length, or a transfer coding); HTTP/2 need not announce it at all."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return not scope.get("http_version", "1.1").startswith("1")


def declared_length(scope: dict[str, Any]) -> int | None:
    """The Content-Length the client announced, or None (chunked; the server checked its syntax)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyBudget:
    """The bytes of bodies this process is receiving, at most `max_bytes` together.

    A stalled upload holds what it sent until its deadline; without a budget a few hundred of
    them hold gigabytes. The first `free_bytes` of each body do not count, so small requests
    (a prediction, a row) are never refused while large uploads fill the budget.
    """

    def __init__(self, max_bytes: int, *, free_bytes: int = 64 * 1024) -> None:
        self.max_bytes = max_bytes
        self.free_bytes = free_bytes
        self.held = 0

    def take(self, count: int) -> None:
        if self.held + count > self.max_bytes:
            raise BodyOverBudget()
        self.held += count

    def give_back(self, count: int) -> None:
        self.held -= count


class _BodyDeadlines:
    """One timer for all the bodies this process is reading, instead of one per read.

    A timer per read (`asyncio.timeout`) costs more than the rest of this module on every
    request; here a read only registers its task, and one task per event loop wakes every
    `TICK_SECONDS` to cancel the reads whose deadline has passed (so a deadline holds to within
    a tick).
    """

    TICK_SECONDS = 0.25

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def receive(self, receive: Receive, deadline: float) -> Message:
        """`receive()`, or TimeoutError once the loop's clock passes `deadline`."""
        task = asyncio.current_task()
        assert task is not None
        reaper = self._reaper
        if reaper is None or reaper.done() or reaper.get_loop() is not task.get_loop():
            self._waiting.clear()  # another loop's (a test's earlier asyncio.run)
            self._reaper = task.get_loop().create_task(self._reap())
        self._waiting[task] = deadline
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise TimeoutError from None
        finally:
            self._waiting.pop(task, None)

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.TICK_SECONDS)
            now = loop.time()
            for task, deadline in list(self._waiting.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()


_deadlines = _BodyDeadlines()


class BoundedBody:
    """`receive` that raises BodyTooLarge past `max_bytes`, BodyTooSlow past the deadline and
    BodyOverBudget when the process's `budget` is spent (`release` it when done with the body).

    The deadline covers the whole body, or with `per_read` each wait for more of it (a streamed
    upload, consumed as it arrives, may take longer in all than a body that is held). Once the
    body is complete, `receive` is the server's own again (a disconnect listener waits on it).
    """

    def __init__(
        self,
        receive: Receive,
        *,
        max_bytes: int,
        timeout_seconds: float,
        per_read: bool = False,
        budget: BodyBudget | None = None,
    ) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.per_read = per_read
        self.budget = budget
        self.received = 0
        self.complete = False
        self._taken = 0  # of the budget
        self._deadline = asyncio.get_running_loop().time() + timeout_seconds

    async def __call__(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.per_read:
            self._deadline = asyncio.get_running_loop().time() + self.timeout_seconds
        try:
            message = await _deadlines.receive(self._receive, self._deadline)
        except TimeoutError:
            raise self._refuse(BodyTooSlow(self.timeout_seconds)) from None
        if message["type"] != "http.request":
            self.complete = True  # a disconnect: nothing more to bound
            self.release()
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.max_bytes:
            raise self._refuse(BodyTooLarge(self.max_bytes))
        if self.budget is not None and self.received > self.budget.free_bytes:
            owed = self.received - self.budget.free_bytes - self._taken
            try:
                self.budget.take(owed)
            except BodyOverBudget as refusal:
                raise self._refuse(refusal) from None
            self._taken += owed
        self.complete = not message.get("more_body", False)
        if self.complete:
            self.release()
        return message

    def _refuse(self, refusal: BodyRefused) -> BodyRefused:
        """The body is not read further: what it holds of the budget goes back."""
        self.complete = True
        self.release()
        return refusal

    def release(self) -> None:
        """Give the budget back: the body is whole (or abandoned)."""
        if self.budget is not None:
            self.budget.give_back(self._taken)
        self._taken = 0
