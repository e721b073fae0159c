"""ASGI entry point: `stack.serve algorithm.asgi:app`."""

from algorithm.app import create_asgi_app
from algorithm.config import get_settings
from stack.logs import configure_logging

configure_logging(get_settings().log_format)  # the process's own logging, for any ASGI server
app = create_asgi_app()
