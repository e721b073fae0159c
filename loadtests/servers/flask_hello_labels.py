"""The cheapest upstream web's predictions can have: the Flask hello, answering a whole call.

`loadtests/servers/flask_hello.py` (the algorithm service's bare ceiling: Flask on the service's
loop and pool, no token check, limits, request ids, metrics, access line or model), whose
`POST /predict` also reads the body and answers a coalesced call `{"texts": [...]}` with a
constant label per text, as the algorithm service's answer is shaped. Web in front of it
(`web_hello_upstream` in loadtests/bench_servers.py) pays for its hop what the design allows at
the least: the algorithm service's share of the cores can only be larger than this one's.

    python -m core.pool loadtests.servers.flask_hello_labels:app --port 8106 --workers 2
"""

from __future__ import annotations

import json
from typing import Any

from algorithm.service.event_loop import FlaskASGI, LoopFlask, request_body

hello = LoopFlask(__name__)


@hello.route("/predict", methods=["POST"])
async def predict() -> dict[str, Any]:
    """A constant label for each text of the body (one text: one label)."""
    body = json.loads(request_body())
    if "texts" in body:
        return {"labels": ["hello"] * len(body["texts"]), "model_version": "hello-world"}
    return {"label": "hello", "model_version": "hello-world"}


app = FlaskASGI(hello, max_body_bytes=32 * 1024 * 1024)
