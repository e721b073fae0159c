"""WSGI entry point: `stack.serve algorithm.wsgi:app`."""

from algorithm.app import create_app

app = create_app()
