"""The HTTP edge: middlewares (security headers, observability, rate limits, admin sessions) and
static files."""
