"""Static files through the ASGI application, as Hypercorn serves them (no internet needed)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from tests.helpers import assert_error
from web.asgi import application, django_app
from web.edge.static import static_files_app

CSS = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"


def get(path: str, app: Any = application, **headers: str) -> httpx.Response:
    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
            return await web.get(path, headers=headers)

    return asyncio.run(scenario())


def test_every_file_the_docs_page_loads_is_served() -> None:
    page = get("/api/docs/")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        response = get(asset)
        assert response.status_code == 200, asset
        assert response.content


def test_scripts_are_typed_and_revalidated_without_a_body() -> None:
    path = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    script = get(path)
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    unchanged = get(path, **{"If-None-Match": script.headers["ETag"]})
    assert (unchanged.status_code, unchanged.content) == (304, b"")


def test_unknown_static_file_is_a_json_404() -> None:
    assert_error(get("/static/no-such-file.js"), 404, "not_found")


def test_files_are_served_with_debug_on_too(settings: Any) -> None:
    settings.DEBUG = True  # WhiteNoise would otherwise look files up per request, not index them
    assert get(CSS, app=static_files_app(fallback=django_app)).status_code == 200
