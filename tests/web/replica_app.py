"""An algorithm-like replica for the balancing tests, served by the real Hypercorn pool.

POST /predict answers `{"labels": [...], "model_version": <REPLICA_NAME>}` after a few
milliseconds, so a caller can tell which replica answered and requests are in flight when the
replica is told to stop. REPLICA_START_SECONDS makes its start-up (lifespan) take that long, as
loading a model does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flask import request

from algorithm.service.event_loop import FlaskASGI, LoopFlask

replica = LoopFlask(__name__)
NAME = os.environ.get("REPLICA_NAME", "replica")


@replica.post("/predict")
async def predict() -> dict[str, Any]:
    texts = (request.get_json(silent=True) or {}).get("texts", [])
    await asyncio.sleep(0.01)
    return {"labels": ["label"] * len(texts), "model_version": NAME}


async def start_slowly() -> None:
    await asyncio.sleep(float(os.environ.get("REPLICA_START_SECONDS", "0")))


app = FlaskASGI(replica, max_body_bytes=1 << 20, on_startup=[start_slowly])
