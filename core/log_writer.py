"""A log handler for event-loop servers: lines formatted where logged, written by a thread.

A `logging.StreamHandler` writes each record on the thread that logs it: in a server process, the
event loop's thread, one `write` system call per line. Each call lets go of the GIL, and web's
workers also run threads of their own (Django starts one per request for its sync signal
receivers), so on a busy machine the loop often waits to get the GIL back; a full pipe to the
container runtime would stall it outright. Measured on web's predict path: an access line per
request, written that way, cost about a tenth of the requests per second, while formatting it
costs ~8 us of CPU (docs/benchmarks.md, "Observability cost").

`BackgroundStreamHandler` formats the record on the caller's thread (so the request id, the
message's arguments and any exception are those of the moment), queues the line and returns. One
thread per handler writes the lines: it wakes on the first line, lets the next `GATHER_SECONDS`
of lines queue up behind it, and writes them all at once, in order. Under load that is a few
writes (and wake-ups) a second instead of one per line; a line is at most that much late. On
`close` (logging's shutdown at exit, or a reconfiguration) the queued lines are written before the
handler closes; a process killed outright loses its last moments' lines. The writer thread does
not survive a `fork`: use the handler in processes that do not fork after configuring logging
(the HTTP servers' workers), not in Celery's prefork parent.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TextIO

# One write carries at most this many lines: a flood of lines reaches the stream in pieces of
# bounded size.
MAX_LINES_PER_WRITE = 1000
CLOSE_TIMEOUT_SECONDS = 5.0
# How long the first line waits for others to share its write: the most a line is late.
GATHER_SECONDS = 0.05


class BackgroundStreamHandler(logging.StreamHandler[TextIO]):
    """`logging.StreamHandler` whose writes happen on a thread of its own."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_until_closed, name="log-writer", daemon=True
        )
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._writer.is_alive():  # closed: write it here, as logging.StreamHandler would
            super().emit(record)
            return
        try:
            self._lines.put(self.format(record) + self.terminator)
        except Exception:  # what logging.StreamHandler.emit does with a record it cannot format
            self.handleError(record)

    def flush(self) -> None:
        """Nothing to do here: the writer thread flushes after every write (and only it may)."""

    def close(self) -> None:
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join(CLOSE_TIMEOUT_SECONDS)
        super().close()

    def _write_until_closed(self) -> None:
        closed = False
        while not closed:
            lines = [self._lines.get()]
            if lines[0] is not None:  # (closing an idle handler need not wait)
                # Let the lines of the next moments queue up: under load this thread then
                # wakes (and takes the GIL from the loop) a few times a second, not per line.
                time.sleep(GATHER_SECONDS)
            with contextlib.suppress(queue.Empty):
                while True:
                    lines.append(self._lines.get_nowait())
            closed = None in lines
            for start in range(0, len(lines), MAX_LINES_PER_WRITE):
                chunk = lines[start : start + MAX_LINES_PER_WRITE]
                self._write("".join(line for line in chunk if line is not None))

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # closed or broken stream: nothing left to report it to
            pass
