"""`GET /api/schema/`: drf-spectacular's schema view, generating one schema at a time.

drf-spectacular's generation is not thread-safe: it sets each view class's shared schema
inspector to the view being inspected, and DRF runs this sync view on a thread per request under
ASGI, so two clients fetching the schema at once (the Swagger page and a client generator, or
three fuzzers) could get a 500 ("Schema generation REQUIRES a view instance"). A process-wide
lock makes concurrent requests take turns; each still gets a freshly generated schema.
"""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.views import SpectacularAPIView

_generating = threading.Lock()


class SchemaView(SpectacularAPIView):
    def _get_schema_response(self, request: Any) -> Any:
        with _generating:
            return super()._get_schema_response(request)
