"""Web with Django's own ASGI handler (a thread started per request): the bench's "before" of
web/edge/request_handler.py. Everything else is `web.asgi`'s.

    python -m core.pool loadtests.servers.web_stock_handler:application --port 8104 --workers 2
"""

from __future__ import annotations

import web.asgi
from web.data.streamed_body import StreamingImportHandler

web.asgi.django_app = StreamingImportHandler()  # what `_static_or_django` calls
application = web.asgi.application
