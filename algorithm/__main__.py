"""`python -m algorithm`: serve predictions with the configured Hypercorn pool."""

import sys

from algorithm.service.config import get_settings
from core.pool import serve_pool

settings = get_settings()
sys.exit(
    serve_pool(
        "algorithm.service.asgi:app",
        host=settings.algorithm_host,
        port=settings.algorithm_port,
        workers=settings.algorithm_workers,
    )
)
