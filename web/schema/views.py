"""`GET /api/schema/`: drf-spectacular's schema view, the schema built once per process.

Building the schema costs about a second of CPU and rendering it as YAML a quarter of one: an
anonymous client asking for it in a loop would keep a core busy. The schema cannot change while
the process runs, so it is built on the first request and each rendering (one per renderer:
YAML or JSON, picked by the Accept header as before) is kept in memory and served from there.
drf-spectacular's generation is not thread-safe either (it sets each view class's shared schema
inspector to the view being inspected): the first build happens under a lock, so two first
requests at once take turns. `?lang=` and `?version=` are ignored: the API has one of each.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse
from drf_spectacular.views import SpectacularAPIView


@dataclass(frozen=True)
class RenderedSchema:
    content: bytes
    content_type: str
    disposition: str


_building = threading.Lock()
_rendered: dict[type, RenderedSchema] = {}
_schema: dict[str, Any] = {}


class SchemaView(SpectacularAPIView):
    def _get_schema_response(self, request: Any) -> HttpResponse:
        renderer = request.accepted_renderer
        rendered = _rendered.get(type(renderer))
        if rendered is None:
            with _building:
                rendered = _rendered.get(type(renderer))
                if rendered is None:
                    rendered = _rendered[type(renderer)] = self._render(request, renderer)
        response = HttpResponse(rendered.content, content_type=rendered.content_type)
        response["Content-Disposition"] = rendered.disposition
        return response

    def _render(self, request: Any, renderer: Any) -> RenderedSchema:
        if not _schema:
            _schema.update(super()._get_schema_response(request).data)
        media_type = renderer.media_type
        content = renderer.render(_schema, media_type, self.get_renderer_context())
        charset = renderer.charset
        return RenderedSchema(
            content=content if isinstance(content, bytes) else content.encode(charset or "utf-8"),
            content_type=f"{media_type}; charset={charset}" if charset else media_type,
            disposition=f'inline; filename="{self._get_filename(request, None)}"',
        )
