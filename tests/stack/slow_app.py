"""A pool test app: one `async def` view that takes its time, served like the algorithm service."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from algorithm.service.event_loop import FlaskASGI, LoopFlask

slow = LoopFlask(__name__)
# A file the view creates as a request enters it.
ENTERED_MARKER_ENV = "SLOW_APP_ENTERED_MARKER"


@slow.get("/slow")
async def take_time() -> dict[str, str]:
    if marker := os.environ.get(ENTERED_MARKER_ENV):  # the test waits for a request to be here
        Path(marker).touch()
    await asyncio.sleep(1.5)
    return {"status": "finished"}


app = FlaskASGI(slow, max_body_bytes=1024)
