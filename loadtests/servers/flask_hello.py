"""The algorithm service's ceiling: a Flask hello-world `async def` view, no model.

It is served as the algorithm service is (`LoopFlask` through `FlaskASGI`, on the same pool),
bare: without the service's token check, body limits, request ids, metrics or access line, which
`POST /predict` also pays. `loadtests/servers/algorithm_hello.py` is the ceiling with those on.

    python -m core.pool loadtests.servers.flask_hello:app --port 8101 --workers 2
"""

from __future__ import annotations

from typing import Any

from algorithm.service.event_loop import FlaskASGI, LoopFlask

hello = LoopFlask(__name__)


@hello.route("/predict", methods=["GET", "POST"])
async def predict() -> dict[str, Any]:
    """Answer a constant of the same shape as a prediction."""
    return {"label": "hello", "model_version": "hello-world"}


app = FlaskASGI(hello, max_body_bytes=32 * 1024 * 1024)
