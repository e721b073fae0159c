"""Web's ceiling: one Django async view returning a constant, under web's own configuration.

Same settings (middleware included) as `web.settings`, only the URLconf differs; served by the
same server pool and the same handlers (web/edge/request_handler.py, and for the predict path
web/proxy/predict_route.py) as `python -m web`, behind the same body limits (413, 408), and
like `web.asgi` it installs its rate limiter (so the rate-limit middleware does its work, not
pass every request through) and freezes its start-up heap on lifespan start:

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

from web.config import get_settings  # noqa: E402
from web.edge import rate_limits  # noqa: E402  (needs the settings)
from web.edge.body_limits import limit_web_bodies  # noqa: E402
from web.edge.request_handler import PooledThreadHandler  # noqa: E402
from web.proxy.predict_route import PredictRoute  # noqa: E402


async def constant(request: HttpRequest) -> JsonResponse:
    """Answer a constant of the same shape as a prediction."""
    return JsonResponse({"label": "hello", "model_version": "django-ceiling"})


# Named like web's predict route, so the token check treats it the same (reader).
urlpatterns = [path("api/predict/", constant, name="predict")]

django_application = PooledThreadHandler()
# Web serves its predictions through this route, so its ceiling is measured through it too.
predict_route = PredictRoute()


async def _route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if predict_route.serves(scope):
        await predict_route(scope, receive, send)
    else:
        await django_application(scope, receive, send)


# As web.asgi bounds every body before Django sees it.
http_app = limit_web_bodies(_route)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await http_app(scope, receive, send)
        return
    while (await receive())["type"] == "lifespan.startup":
        rate_limits.install(rate_limits.limiter_from_settings(get_settings()))
        freeze_startup_heap()
        await send({"type": "lifespan.startup.complete"})
    limiter = rate_limits.get_limiter()
    if limiter is not None:
        await limiter.aclose()
    await send({"type": "lifespan.shutdown.complete"})
