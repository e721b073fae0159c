"""`/api/predict/` beside Django's URL routing: the same middleware and view, fewer steps.

For every request Django's handler resolves the URL against every pattern, spools the body into
a temporary file and races the view against a task listening for the client's disconnect. This
route serves the hottest path with the same objects: Django's request and response classes, the
middleware chain of `settings.MIDDLEWARE` (request id, metrics, access line, CORS, security
headers, caller limits, token and role, rate limit) and the same `predict` view (body parsing,
coalescing, error shapes, 405 with Allow). It skips only those three steps: the route is known,
the body is already whole and bounded (web/edge/body_limits.py, 413 included) and a prediction
is over within the algorithm client's timeout, so a client that leaves costs no more than that.
The route stays off (Django serves the path) if a middleware needs what it skips (view,
exception or template-response hooks) or a request signal's receiver is not known to be safe
inline (web/edge/request_handler.py).
"""

from __future__ import annotations

import io
from typing import Any

from django.core.exceptions import RequestAborted
from django.http import HttpRequest
from django.urls import ResolverMatch, resolve

from web.edge.request_handler import PooledThreadHandler, Receive, Send

PREDICT_PATHS = frozenset({"/api/predict/", "/api/predict"})


class PredictRoute(PooledThreadHandler):
    """Django's handler for the predict path only: no URL resolution, no disconnect race."""

    def __init__(self) -> None:
        super().__init__()
        self.match: ResolverMatch = resolve("/api/predict/")
        hooks = self._view_middleware + self._template_response_middleware
        self.enabled = self.inline_signals and not hooks and not self._exception_middleware

    def serves(self, scope: dict[str, Any]) -> bool:
        return self.enabled and scope["path"] in PREDICT_PATHS

    def resolve_request(self, request: HttpRequest) -> Any:
        """The one route this handler serves: what Django's resolver would have found."""
        request.resolver_match = self.match
        return self.match.func, self.match.args, self.match.kwargs

    async def read_body(self, receive: Receive) -> Any:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                return io.BytesIO(body)

    async def respond(self, request: Any, receive: Receive, send: Send, body_file: Any) -> None:
        """Run the request and send its answer; no race against the client's disconnect."""
        response = await self.run_get_response(request)
        await self.send_response(response, send)
        await self._close(response)
