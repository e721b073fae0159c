"""web.settings without the request-id and metrics middleware (`make bench`'s "off" variant)."""

from web.settings import *  # noqa: F403 - the point is to inherit every setting
from web.settings import MIDDLEWARE

OBSERVABILITY = ("web.edge.observability.observe_request",)
MIDDLEWARE = [name for name in MIDDLEWARE if name not in OBSERVABILITY]
