"""Web as it was before its predict path was made faster: Django's own ASGI handler (a thread
started per request) for every route, the predict path included (no predict route), served by
Hypercorn in the pool. Everything else is `web.asgi`'s.

    python -m core.pool loadtests.servers.web_stock_handler:application --port 8104 --workers 2
"""

from __future__ import annotations

import web.asgi
from web.data.streamed_body import StreamingImportHandler

web.asgi.django_app = StreamingImportHandler()  # what `_static_or_django` calls
web.asgi.predict_route = None
application = web.asgi.application
