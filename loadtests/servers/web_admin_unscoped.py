"""web.settings with the admin's three sync middlewares on every path (the usual setup)."""

from web.settings import *  # noqa: F403 - the point is to inherit every setting
from web.settings import MIDDLEWARE

MIDDLEWARE = [
    *(name for name in MIDDLEWARE if name != "web.edge.admin_sessions.admin_sessions"),
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
