"""`python -m web`: serve the web API with the configured Hypercorn pool.

`python -m web COMMAND ...` runs a Django management command instead (createtoken, listtokens,
revoketoken, migrate, ...), with web's settings.
"""

import os
import sys

if len(sys.argv) > 1:
    from django.core.management import execute_from_command_line

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    execute_from_command_line(["python -m web", *sys.argv[1:]])
    sys.exit(0)

from core.pool import serve_pool  # noqa: E402
from web.config import get_settings  # noqa: E402

settings = get_settings()
sys.exit(
    serve_pool(
        "web.asgi:application",
        host=settings.web_host,
        port=settings.web_port,
        workers=settings.web_workers,
    )
)
