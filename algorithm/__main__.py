"""`python -m algorithm`: serve predictions with the configured Hypercorn pool."""

import sys

from algorithm.config import get_settings
from stack.serve import main

settings = get_settings()
sys.exit(
    main(["algorithm.asgi:app", "--host", settings.algorithm_host,
          "--port", str(settings.algorithm_port), "--workers", str(settings.algorithm_workers)])
)  # fmt: skip
