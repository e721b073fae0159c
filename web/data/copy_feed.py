"""A COPY written by a thread of its own, so that the next blocks are checked meanwhile.

PostgreSQL's COPY runs in its own process; while a block is being written (and PostgreSQL
waits for the next), the request's thread reads and checks the following rows. The queue holds
at most QUEUED_BLOCKS blocks (a few hundred KB each), so memory stays flat whatever the body's
size; a full queue makes the checking wait for the COPY.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType
from typing import Any

QUEUED_BLOCKS = 4
_END = b""


class CopyFeed:
    """Blocks of COPY text, written to `copy` in order by a thread, while the caller goes on.

    Used as a context manager inside the COPY's own: on leaving it, every queued block has been
    written (or dropped after an error), the thread has ended, and a write's error is raised.
    """

    def __init__(self, copy: Any, *, depth: int = QUEUED_BLOCKS) -> None:
        self._copy = copy
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False  # the caller failed: queued blocks are dropped, not written
        self._thread = threading.Thread(target=self._write_blocks, name="import-copy")

    def __enter__(self) -> CopyFeed:
        self._thread.start()
        return self

    def write(self, block: bytes) -> None:
        """Queue a block (waiting while the queue is full); raise a failed write's error."""
        if self._error is not None:
            raise self._error
        if block:
            self._queue.put(block)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._abandoned = error is not None
        self._queue.put(_END)
        self._thread.join()
        if error is None and self._error is not None:
            raise self._error

    def _write_blocks(self) -> None:
        while block := self._queue.get():  # _END, the empty block, ends it
            if self._error is None and not self._abandoned:  # else taken and dropped
                try:
                    self._copy.write(block)
                except BaseException as exc:  # noqa: BLE001 (handed to the request's thread)
                    self._error = exc
