"""Web's ceiling: one Django async view returning a constant, under web's own configuration.

Same settings (middleware included) as `web.settings`, only the URLconf differs; served by the
same pool as `python -m web`:

    DJANGO_SECRET_KEY=... python -m stack.serve loadtests.servers.django_ceiling:application \\
        --port 8103 --workers 2
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

os.environ["DJANGO_SETTINGS_MODULE"] = "loadtests.servers.django_ceiling_settings"


async def constant(request: HttpRequest) -> JsonResponse:
    """Answer a constant of the same shape as a prediction."""
    return JsonResponse({"label": "hello", "model_version": "django-ceiling"})


urlpatterns = [path("api/predict/", constant)]

application = get_asgi_application()
