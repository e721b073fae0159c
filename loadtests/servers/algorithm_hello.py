"""The algorithm service's ceiling through its own request handling: a constant, not a model.

`algorithm.service.asgi:app` as `python -m algorithm` serves it (the service token checked
before the body is read, body limits, request ids, request metrics, the access line), with one
more route, `POST /hello`, whose view answers a constant of a prediction's shape. Set against
`POST /predict` of the same app on the same pool, the difference is the prediction's own work
(reading and validating the body, the batcher, the model), as web's ceiling
(loadtests/servers/django_ceiling.py) keeps web's middleware. `loadtests/servers/flask_hello.py`
stays the bare ceiling: Flask on the same loop and pool without any of those.

    python -m core.pool loadtests.servers.algorithm_hello:app --port 8105 --workers 2
"""

from __future__ import annotations

from typing import Any

from algorithm.service.app import create_asgi_app
from algorithm.service.config import get_settings
from algorithm.service.event_loop import FlaskASGI
from algorithm.service.observability import ObservedASGI
from core.logs import configure_logging

configure_logging(get_settings().log_format)
app = create_asgi_app()
assert isinstance(app, ObservedASGI) and isinstance(app.app, FlaskASGI)
flask_app = app.app.flask_app


@flask_app.post("/hello")
async def hello() -> dict[str, Any]:
    """Answer a constant of the same shape as a prediction."""
    return {"label": "hello", "model_version": "algorithm-hello"}
