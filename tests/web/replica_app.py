"""An algorithm-like replica for the balancing tests, served by the real Hypercorn pool.

POST /predict answers `{"labels": [...], "model_version": <REPLICA_NAME>}` after a few
milliseconds, so a caller can tell which replica answered and requests are in flight when the
replica is told to stop. With REPLICA_LOADED_FILE set, its start-up (lifespan) lasts until that
file exists, as loading a model does until it is done; it creates REPLICA_LOADING_FILE when its
start-up begins (its socket is bound by then, not yet listening).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
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
    loaded = os.environ.get("REPLICA_LOADED_FILE")
    if not loaded:
        return
    Path(os.environ["REPLICA_LOADING_FILE"]).touch()
    while not Path(loaded).exists():
        await asyncio.sleep(0.01)


app = FlaskASGI(replica, max_body_bytes=1 << 20, on_startup=[start_slowly])
