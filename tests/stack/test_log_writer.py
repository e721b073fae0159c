"""Log lines written off the logging thread (core/log_writer.py)."""

from __future__ import annotations

import io
import logging
import threading
import time

from core.log_writer import GATHER_SECONDS, BackgroundStreamHandler
from core.logs import REQUEST_ID, TextFormatter, install_request_id_on_records
from tests.helpers import wait_until


class StalledStream(io.StringIO):
    """A destination whose writes wait until released, like a full pipe; it counts writes."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.writes = 0

    def write(self, text: str) -> int:
        self.released.wait(10)
        self.writes += 1
        return super().write(text)


def logger_writing_to(handler: logging.Handler, name: str) -> logging.Logger:
    install_request_id_on_records()
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger(name)
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    return logger


def test_a_stalled_destination_does_not_stall_the_code_that_logs() -> None:
    stream = StalledStream()
    handler = BackgroundStreamHandler(stream)
    logger = logger_writing_to(handler, "tests.stalled")
    try:
        started = time.perf_counter()
        for number in range(500):
            token = REQUEST_ID.set(f"req-{number}")
            logger.info("line %d", number)
            REQUEST_ID.reset(token)
        assert time.perf_counter() - started < 2  # a StreamHandler would wait 10 s on line 0
        assert stream.getvalue() == ""
        stream.released.set()
    finally:
        handler.close()  # writes what is queued before it returns
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    # Every line, in order, with the request id of the moment it was logged.
    assert [line.split(" ", 4)[-1] for line in lines] == [
        f"[req-{number}] line {number}" for number in range(500)
    ]
    assert stream.writes < 500 / 2  # queued lines go out many per write


def test_lines_reach_the_stream_without_a_close_and_stay_in_order() -> None:
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    logger = logger_writing_to(handler, "tests.background")
    try:
        for number in range(3):
            logger.warning("event %d", number)
        text = wait_until(
            lambda: stream.getvalue() if stream.getvalue().count("\n") == 3 else None,
            timeout=5,
            what="three lines written",
        )
        assert [line.split("] ", 1)[1] for line in text.splitlines()] == [
            "event 0",
            "event 1",
            "event 2",
        ]
    finally:
        handler.close()
        logger.removeHandler(handler)


def test_closing_an_idle_handler_does_not_wait_for_lines_to_gather() -> None:
    handlers = [BackgroundStreamHandler(io.StringIO()) for _ in range(10)]
    started = time.perf_counter()
    for handler in handlers:
        handler.close()  # as logging does at every reconfiguration and at exit
    assert time.perf_counter() - started < len(handlers) * GATHER_SECONDS
