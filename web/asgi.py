"""ASGI entry point for the server pool, with start-up and shutdown of the algorithm client.

Django has no ASGI lifespan support of its own; `application` answers lifespan events so the
process's one httpx client and its rate limiter are opened before the first request and closed on
shutdown.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
django.setup(set_prefix=False)  # what get_asgi_application does, with our handler below

from django.conf import settings  # noqa: E402

from core.heap import freeze_startup_heap  # noqa: E402
from web.config import get_settings  # noqa: E402
from web.data.streamed_body import StreamingImportHandler  # noqa: E402
from web.edge import rate_limits  # noqa: E402  (needs configured settings)
from web.edge.body_limits import limit_web_bodies  # noqa: E402
from web.edge.request_handler import PooledThreadHandler  # noqa: E402
from web.edge.static import static_files_app  # noqa: E402
from web.proxy import algorithm_client  # noqa: E402  (needs configured settings)
from web.proxy.predict_route import PredictRoute  # noqa: E402
from web.registry.reconciler import RegistryReconciler  # noqa: E402


class WebHandler(StreamingImportHandler, PooledThreadHandler):
    """Django's handler: an import's body goes to its view as it arrives (no spool), and no
    request starts a thread of its own (web/edge/request_handler.py)."""


django_app = WebHandler()
# The hottest path beside Django's URL routing: same middleware, same view (see its module).
predict_route: PredictRoute | None = (
    PredictRoute() if get_settings().web_fast_predict_route else None
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STATIC_PREFIX = "/" + settings.STATIC_URL.strip("/") + "/"
static_app = static_files_app(fallback=django_app)


async def _static_or_django(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    # Static files never pass through Django's middleware; predictions skip its URL routing.
    if scope["path"].startswith(STATIC_PREFIX):
        await static_app(scope, receive, send)
    elif predict_route is not None and predict_route.serves(scope):
        await predict_route(scope, receive, send)
    else:
        await django_app(scope, receive, send)


# Every body bounded by its route before Django (or anything) stores a byte of it.
http_app = limit_web_bodies(_static_or_django)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "lifespan":
        await http_app(scope, receive, send)
        return
    reconciler: RegistryReconciler | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            config = get_settings()
            algorithm_client.install(
                algorithm_client.AlgorithmClient(
                    config.algorithm_url,
                    timeout=config.algorithm_timeout_seconds,
                    connect_retries=config.algorithm_connect_retries,
                    token=config.algorithm_token,
                    resolve_seconds=config.algorithm_resolve_seconds,
                    connection_max_seconds=config.algorithm_connection_max_seconds,
                )
            )
            rate_limits.install(rate_limits.limiter_from_settings(config))
            if config.registry_reconcile_seconds > 0:  # Redis re-told what the registry says
                reconciler = RegistryReconciler(interval=config.registry_reconcile_seconds)
                reconciler.start()
            freeze_startup_heap()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if reconciler is not None:
                await reconciler.aclose()
            await algorithm_client.get_client().aclose()
            algorithm_client.install(None)
            limiter = rate_limits.get_limiter()
            if limiter is not None:
                await limiter.aclose()
                rate_limits.install(None)
            await send({"type": "lifespan.shutdown.complete"})
            return
