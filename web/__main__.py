"""`python -m web`: serve the web API with the configured Hypercorn pool."""

import sys

from stack.serve import serve_pool
from web.config import get_settings

settings = get_settings()
sys.exit(
    serve_pool(
        "web.asgi:application",
        host=settings.web_host,
        port=settings.web_port,
        workers=settings.web_workers,
    )
)
