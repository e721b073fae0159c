"""`python -m algorithm`: serve predictions with the configured Hypercorn pool."""

import sys

from algorithm.config import get_settings
from stack.serve import serve_pool

settings = get_settings()
sys.exit(
    serve_pool(
        "algorithm.asgi:app",
        host=settings.algorithm_host,
        port=settings.algorithm_port,
        workers=settings.algorithm_workers,
    )
)
