"""Web's ceiling: one Django async view returning a constant, under web's own configuration.

Same settings (middleware included) as `web.settings`, only the URLconf differs; served by the
same server pool and the same handlers (web/edge/request_handler.py, and for the predict path
web/proxy/predict_route.py) as `python -m web`, and
like `web.asgi` it freezes its start-up heap on lifespan start:

    DJANGO_SECRET_KEY=... python -m core.pool loadtests.servers.django_ceiling:application \\
        --port 8103 --workers 2
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.http import HttpRequest, JsonResponse
from django.urls import path

from core.heap import freeze_startup_heap

os.environ["DJANGO_SETTINGS_MODULE"] = "loadtests.servers.django_ceiling_settings"
django.setup(set_prefix=False)

from web.edge.request_handler import PooledThreadHandler  # noqa: E402  (needs the settings)
from web.proxy.predict_route import PredictRoute  # noqa: E402


async def constant(request: HttpRequest) -> JsonResponse:
    """Answer a constant of the same shape as a prediction."""
    return JsonResponse({"label": "hello", "model_version": "django-ceiling"})


# Named like web's predict route, so the token check treats it the same (reader).
urlpatterns = [path("api/predict/", constant, name="predict")]

django_application = PooledThreadHandler()
# Web serves its predictions through this route, so its ceiling is measured through it too.
predict_route = PredictRoute()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        if predict_route.serves(scope):
            await predict_route(scope, receive, send)
        else:
            await django_application(scope, receive, send)
        return
    while (await receive())["type"] == "lifespan.startup":
        freeze_startup_heap()
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
