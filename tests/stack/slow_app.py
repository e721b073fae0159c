"""A pool test app: one `async def` view that takes its time, served like the algorithm service."""

from __future__ import annotations

import asyncio

from algorithm.service.event_loop import FlaskASGI, LoopFlask

slow = LoopFlask(__name__)


@slow.get("/slow")
async def take_time() -> dict[str, str]:
    await asyncio.sleep(1.5)
    return {"status": "finished"}


app = FlaskASGI(slow, max_body_bytes=1024)
