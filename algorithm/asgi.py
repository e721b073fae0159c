"""ASGI entry point: `stack.serve algorithm.asgi:app`."""

from algorithm.app import create_asgi_app

app = create_asgi_app()
