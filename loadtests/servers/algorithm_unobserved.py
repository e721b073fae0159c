"""The algorithm service without request ids, request metrics or the access log (`make bench`).

The same app as `algorithm.service.asgi:app` but for `observe=False`, served by the same pool, so
the
difference in requests/s is what observability costs:

    python -m core.pool loadtests.servers.algorithm_unobserved:app --port 8104 --workers 2
"""

from algorithm.service.app import create_asgi_app
from algorithm.service.config import get_settings
from core.logs import configure_logging

configure_logging(get_settings().log_format)
app = create_asgi_app(observe=False)
