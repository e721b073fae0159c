"""Log lines every service writes the same way: the request id on each, text or JSON.

`REQUEST_ID` holds the id of the request (or training task) being handled; asyncio tasks and
`asyncio.to_thread` copy it, so every line logged while handling one request carries its id.
`LOG_FORMAT=text` (the default) writes one readable line per record; `LOG_FORMAT=json` one JSON
object per line with `time`, `level`, `logger`, `message`, `request_id` and, on access lines,
`method`, `route`, `status` and `duration_ms`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import random
import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
# What a client may send as its own id: short, no spaces or control characters, so it cannot
# forge log lines or grow them without bound. Anything else is replaced by a new id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def new_request_id() -> str:
    """32 random hex digits, like a uuid4's.

    From the process's Mersenne Twister (seeded from the OS at start and again in every forked
    child), not `uuid4`: an id only has to be unique, and `uuid4`'s system call for random bytes
    was the largest part of making one (14 us of a request's ~1 ms under a profiler).
    """
    return f"{random.getrandbits(128):032x}"


def accepted_request_id(value: str | None) -> str:
    """The client's id when it is a sensible one, else a new one."""
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def install_request_id_on_records() -> None:
    """Give every log record of this process a `request_id` (`-` outside a request).

    A record factory rather than a handler filter: every handler sees it, including those of
    Celery, of pytest's log capture, and of libraries that add their own.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "adds_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = REQUEST_ID.get() or "-"
        return record

    record_with_request_id.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or "-",
        }
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, formatting each second's time stamp once.

    An access line per request otherwise pays a localtime and a strftime call for a stamp the
    line before it already had.
    """

    MSEC_FORMAT = "%s,%03d"  # logging's own default_msec_format

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
        return self.MSEC_FORMAT % (self._stamp, record.msecs)


def _skip_unused_record_fields() -> None:
    """Spare every record the caller's frame, thread and process: no format here prints them.

    The switches logging documents for this (its HOWTO, "Optimization").
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


_write_in_background = False


def write_logs_in_background() -> None:
    """Make `logging_config` from now on write this process's lines from a thread of its own.

    For the HTTP servers' worker processes (core/pool.py), whose event loop must not wait on a
    write (core/log_writer.py); before the app configures logging, so the app's own
    configuration (Django's LOGGING) picks it up too.
    """
    global _write_in_background
    _write_in_background = True


def logging_config(
    log_format: LogFormat, *, levels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: one stderr handler on the root, in `log_format`."""
    install_request_id_on_records()
    _skip_unused_record_fields()
    formatter: dict[str, Any] = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    handler = (
        "core.log_writer.BackgroundStreamHandler"
        if _write_in_background
        else "logging.StreamHandler"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": handler, "formatter": "default"}},
        "root": {"handlers": ["console"], "level": "INFO"},
        "loggers": {name: {"level": level} for name, level in (levels or {}).items()},
    }


def configure_logging(log_format: LogFormat, *, levels: dict[str, str] | None = None) -> None:
    """Configure this process's root logger (call once, from the process's entry point)."""
    logging.config.dictConfig(logging_config(log_format, levels=levels))


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    """The formatter `logging_config` uses, for handlers created by others (Celery's)."""
    install_request_id_on_records()
    return JsonFormatter() if log_format == "json" else TextFormatter()
