"""ASGI entry point: `core.pool algorithm.service.asgi:app`."""

from algorithm.service.app import create_asgi_app
from algorithm.service.config import get_settings
from core.logs import configure_logging

configure_logging(get_settings().log_format)  # the process's own logging, for any ASGI server
app = create_asgi_app()
