"""web.settings without the token check and CORS: the bench's "off" variant, to see their cost."""

from web.settings import *  # noqa: F403 - the point is to inherit every setting
from web.settings import MIDDLEWARE

MIDDLEWARE = [
    name
    for name in MIDDLEWARE
    if name not in {"web.auth.middleware.authenticate", "corsheaders.middleware.CorsMiddleware"}
]
