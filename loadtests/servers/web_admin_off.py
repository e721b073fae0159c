"""web.settings without the admin's scoped session middleware (what /api/ would cost without it)."""

from web.settings import *  # noqa: F403 - the point is to inherit every setting
from web.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if name != "web.edge.admin_sessions.admin_sessions"]
