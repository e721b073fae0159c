"""web.settings without authentication and rate limiting: the bench's "guard off" web.

Everything else (URLs, the other middleware, the algorithm client) is web's own, so the bench's
`web` / `web_unguarded` ratio is what those two middleware cost.
"""

from web.settings import *  # noqa: F403 - the point is to inherit every setting
from web.settings import MIDDLEWARE as GUARDED_MIDDLEWARE

GUARD_MIDDLEWARE = {"web.auth.middleware.authenticate", "web.edge.rate_limits.rate_limit"}
MIDDLEWARE = [name for name in GUARDED_MIDDLEWARE if name not in GUARD_MIDDLEWARE]
