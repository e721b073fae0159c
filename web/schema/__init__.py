"""The OpenAPI schema of web and the view that serves it."""
