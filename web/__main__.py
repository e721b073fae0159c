"""`python -m web`: serve the web API with the configured Hypercorn pool."""

import sys

from stack.serve import main
from web.config import get_settings

settings = get_settings()
sys.exit(
    main(
        [
            "web.asgi:application",
            "--host",
            settings.web_host,
            "--port",
            str(settings.web_port),
            "--workers",
            str(settings.web_workers),
        ]
    )  # fmt: skip
)
