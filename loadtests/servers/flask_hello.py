"""The algorithm service's ceiling: a Flask hello-world `async def` view, no model.

It uses the algorithm's own long-lived-loop Flask class, so the only difference from
`POST /predict` under `python -m stack.serve ... --workers 2` is the prediction work itself.

    python -m stack.serve loadtests.servers.flask_hello:app --port 8101 --workers 2
"""

from __future__ import annotations

from typing import Any

from algorithm.event_loop import LongLivedLoopFlask, LoopThread

app = LongLivedLoopFlask(__name__)
app.loop_thread = LoopThread()


@app.route("/predict", methods=["GET", "POST"])
async def hello() -> dict[str, Any]:
    """Answer a constant of the same shape as a prediction."""
    return {"label": "hello", "model_version": "hello-world"}
