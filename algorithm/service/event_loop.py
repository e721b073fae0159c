"""Flask on the server's own event loop: `async def` views with no thread hand-offs.

Flask is a WSGI framework: served by Hypercorn's WSGI wrapper, every request crosses from the
server's loop to an executor thread, and Flask then runs each async view on an event loop of its
own (by default a new one per request). Under load those hand-offs, not the views, cost most of
the time. `FlaskASGI` instead runs Flask's request handling on the server's loop thread inside a
greenlet; when a view awaits, `LoopFlask` switches back to the loop, which runs the coroutine as
a task of the one long-lived loop of the process and resumes the greenlet with its result. The
contract for views: never block; blocking work goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from io import BytesIO
from typing import Any

import greenlet
from flask import Flask, Request, request
from flask.ctx import RequestContext
from flask.globals import request_ctx
from werkzeug.exceptions import (
    HTTPException,
    RequestEntityTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)

from core.heap import freeze_startup_heap
from core.request_body import (
    BodyBudget,
    BodyOverBudget,
    BodyTooLarge,
    BodyTooSlow,
    BoundedBody,
    declared_length,
    has_body,
)

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _RequestGreenlet(greenlet.greenlet):
    """Runs one request's synchronous Flask code; its parent is the loop's task."""


def await_on_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` on the event loop from Flask's synchronous code and return its result."""
    current = greenlet.getcurrent()
    if not isinstance(current, _RequestGreenlet):
        coroutine.close()
        raise RuntimeError(
            "async views of this app run only when it is served through FlaskASGI "
            "(python -m algorithm, or algorithm.service.asgi:app)"
        )
    # The view sees Flask's request and app context: run it in this greenlet's context.
    return current.parent.switch((coroutine, contextvars.copy_context()))


async def run_in_greenlet(function: Callable[..., Any], *args: Any) -> Any:
    """Call synchronous `function` on the loop thread, serving its `await_on_loop` calls."""
    child = _RequestGreenlet(function)
    # A new greenlet starts with empty context variables: Flask's code sees the request's (its
    # request id) as a task would.
    child.gr_context = contextvars.copy_context()
    request = child.switch(*args)
    loop = asyncio.get_running_loop()
    while not child.dead:
        coroutine, context = request
        try:
            result = await loop.create_task(coroutine, context=context)
        except BaseException as exc:  # the view's error (or our cancellation) goes to Flask
            request = child.throw(exc)
        else:
            request = child.switch(result)
    return request


# The environ key that carries a refused body's answer into Flask (see `LoopFlask`).
REFUSED_BODY = "textclf.refused_body"
# The body FlaskASGI read, as bytes: views take it from here (`request_body`), not through
# Werkzeug's stream, which would wrap and read it again.
RAW_BODY = "textclf.body"
# The endpoint whose body gate (`admits_body`) let this request's body be read: a check the
# gate made need not be made again for that endpoint (algorithm/service/auth.py).
BODY_ADMITTED_FOR = "textclf.body_admitted_for"
# The environ and scope key of the template of the route Flask matched (absent: none), for the
# wrapper that times the request (observability.ObservedASGI).
ROUTE_TEMPLATE = "textclf.route"
# The count of requests the app's FlaskASGI is answering right now (`serving_alone`).
REQUESTS_IN_FLIGHT = "textclf.requests_in_flight"


class RequestCount:
    """How many requests an app is answering right now, from the start of their body on."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def request_context() -> RequestContext:
    """Flask's request context (its request, its app), in one look.

    `request.x` and `request_ctx.x` each go through the proxy's attribute lookup, ~3 us a
    time here; the context object itself is one context variable away.
    """
    context: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
    return context


def serving_alone(current: Request | None = None) -> bool:
    """Whether this request (`current`, else Flask's) is the only one its app is answering."""
    count = (current or request).environ.get(REQUESTS_IN_FLIGHT)
    return count is not None and count.value == 1


def request_body(current: Request | None = None) -> bytes:
    """The request's body: the bytes FlaskASGI read, else (another server) Werkzeug's stream.

    `current`: the request, when the caller holds it (each look through Flask's `request` proxy
    costs a few microseconds), else Flask's.
    """
    current = current or request
    body = current.environ.get(RAW_BODY)
    return body if body is not None else current.get_data(cache=False)


class LoopFlask(Flask):
    """Flask whose async views run on the serving loop (see `FlaskASGI`)."""

    # Views and hooks are few and live as long as the app; a bound on what is remembered all
    # the same, should some caller pass a new function each time.
    SYNCED_MAX = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, remembered per function: Flask inspects the function again on every call
        (every view, every `before_request` hook, every request)."""
        synced = self._synced.get(func)
        if synced is None:
            synced = super().ensure_sync(func)
            if len(self._synced) < self.SYNCED_MAX:
                self._synced[func] = synced
        return synced

    def async_to_sync(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            return await_on_loop(func(*args, **kwargs))

        return run

    def preprocess_request(self) -> Any:
        """The matched route noted, Flask's, then the refusal of a body FlaskASGI did not read
        (413, 408, 503), if any.

        The refusal is raised here, after the `before_request` hooks, so it is answered by the
        app's own error handlers in its error shape, and only to a caller they let through.
        """
        current = request_context().request
        if current.url_rule is not None:
            # Noted before the hooks run, so a request they refuse (401) is timed under its
            # route too; FlaskASGI passes it on in the scope.
            current.environ[ROUTE_TEMPLATE] = current.url_rule.rule
        answer = super().preprocess_request()
        refused = current.environ.get(REFUSED_BODY)
        if answer is None and refused is not None:
            raise refused
        return answer


BodyGate = Callable[[str | None, Scope], bool]


class FlaskASGI:
    """An ASGI app serving a `LoopFlask` app; lifespan runs the given start and stop hooks.

    The request body is read in full before Flask sees it, bounded first (core/request_body.py):
    at most `body_limits[endpoint]` bytes, or `max_body_bytes` for an endpoint not listed,
    within `body_timeout_seconds`, sharing `body_budget` with the other bodies arriving. A body
    `admits_body` refuses (no accepted token) is not read at all: Flask then sees none and
    answers the request (401) before a byte of it is taken. A body over its cap, too slow or
    over the budget is not read further, and Flask answers it 413, 408 or 503.
    """

    def __init__(
        self,
        app: Flask,
        *,
        max_body_bytes: int,
        body_limits: Mapping[str, int] | None = None,
        admits_body: BodyGate | None = None,
        body_timeout_seconds: float = 30.0,
        body_budget: BodyBudget | None = None,
        on_startup: Iterable[Hook] = (),
        on_shutdown: Iterable[Hook] = (),
    ) -> None:
        self.flask_app = app
        self.max_body_bytes = max_body_bytes
        self.body_limits = dict(body_limits or {})
        self.admits_body = admits_body
        self.body_timeout_seconds = body_timeout_seconds
        self.body_budget = body_budget
        if app.config["MAX_CONTENT_LENGTH"] is None:  # Werkzeug's own check agrees with ours
            app.config["MAX_CONTENT_LENGTH"] = max([max_body_bytes, *self.body_limits.values()])
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self.in_flight = RequestCount()
        self._routes = app.url_map.bind("localhost")
        # Rules without arguments by path: a body's endpoint found without the router.
        self._static_rules = {
            rule.rule: rule.endpoint for rule in app.url_map.iter_rules() if not rule.arguments
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            phase = message["type"].removeprefix("lifespan.")
            hooks = self.on_startup if phase == "startup" else self.on_shutdown
            try:
                for hook in hooks:
                    await hook()
            except Exception as exc:
                log.exception("lifespan %s failed", phase)
                await send({"type": f"lifespan.{phase}.failed", "message": str(exc)})
                return
            if phase == "startup":
                freeze_startup_heap()
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return

    def _endpoint(self, scope: Scope) -> str | None:
        """The Flask endpoint the request goes to; None: no route (Flask answers 404/405)."""
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        endpoint = self._static_rules.get(path)
        if endpoint is not None:
            return endpoint
        try:
            endpoint, _ = self._routes.match(path, method=scope["method"])
        except HTTPException:
            return None
        return str(endpoint)

    async def _read_body(
        self, scope: Scope, receive: Receive, endpoint: str | None
    ) -> bytes | HTTPException | None:
        """The body; the refusal Flask is to answer instead; None if the client went away."""
        max_bytes = self.body_limits.get(endpoint or "", self.max_body_bytes)
        declared = declared_length(scope)
        if declared is not None and declared > max_bytes:
            return RequestEntityTooLarge(str(BodyTooLarge(max_bytes)))
        bounded = BoundedBody(
            receive,
            max_bytes=max_bytes,
            timeout_seconds=self.body_timeout_seconds,
            budget=self.body_budget,
        )
        body = bytearray()
        try:
            while True:
                try:
                    message = await bounded()
                except BodyTooLarge as refusal:
                    return RequestEntityTooLarge(str(refusal))
                except BodyTooSlow as refusal:
                    return RequestTimeout(str(refusal))
                except BodyOverBudget as refusal:
                    return ServiceUnavailable(str(refusal), retry_after=1)
                if message["type"] == "http.disconnect":
                    return None
                body.extend(message.get("body", b""))
                if bounded.complete:
                    return bytes(body)
        finally:
            bounded.release()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight.value += 1
        try:
            await self._answer(scope, receive, send)
        finally:
            self.in_flight.value -= 1

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        read: bytes | HTTPException | None = b""
        admitted_for = None
        if has_body(scope):
            endpoint = self._endpoint(scope)
            if self.admits_body is None or self.admits_body(endpoint, scope):
                admitted_for = endpoint
                read = await self._read_body(scope, receive, endpoint)
            # else never read: Flask refuses the caller first
        if read is None:
            return  # nobody to answer; a truncated body must not reach a view
        body = read if isinstance(read, bytes) else b""
        environ = _build_environ(scope, body, content_length=len(body))
        environ[REQUESTS_IN_FLIGHT] = self.in_flight
        if isinstance(read, HTTPException):
            environ[REFUSED_BODY] = read
        else:
            environ[RAW_BODY] = body
            if admitted_for is not None and self.admits_body is not None:
                environ[BODY_ADMITTED_FOR] = admitted_for
        status, headers, payload = await run_in_greenlet(self._call_flask, environ, scope)
        if isinstance(read, HTTPException):
            # The rest of the body is never read: the connection cannot carry another request.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _call_flask(
        self, environ: dict[str, Any], scope: Scope
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: list[Any] = []
        written: list[bytes] = []  # WSGI's legacy write() callable; Flask itself never uses it

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
        ) -> Callable[[bytes], object]:
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return written.append

        try:
            chunks = self.flask_app.wsgi_app(environ, start_response)
        finally:
            template = environ.get(ROUTE_TEMPLATE)  # noted by LoopFlask.preprocess_request
            if template is not None:
                scope[ROUTE_TEMPLATE] = template
        try:
            payload = b"".join([*written, *chunks])
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status, headers = started
        latin1 = [(name.lower().encode("latin-1"), val.encode("latin-1")) for name, val in headers]
        return status, latin1, payload


# The WSGI environ of an ASGI HTTP scope, derived from Hypercorn's own: `_build_environ` in
# `hypercorn/app_wrappers.py` (the builder of its WSGI wrapper, `WSGIWrapper`; Hypercorn 0.18,
# https://github.com/pgjones/hypercorn). Changed here: a path outside `root_path` is passed on
# whole instead of raising; SERVER_PORT is a string, as PEP 3333 requires; CONTENT_LENGTH is the
# number of bytes passed on and Transfer-Encoding is dropped (the body is read in full first);
# wsgi.multithread is false (one loop thread) and wsgi.errors is stderr. Hypercorn's licence:
#
#   Copyright P G Jones 2018.
#
#   Permission is hereby granted, free of charge, to any person obtaining a copy of this software
#   and associated documentation files (the "Software"), to deal in the Software without
#   restriction, including without limitation the rights to use, copy, modify, merge, publish,
#   distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
#   Software is furnished to do so, subject to the following conditions:
#
#   The above copyright notice and this permission notice shall be included in all copies or
#   substantial portions of the Software.
#
#   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
#   BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
#   NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
#   DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
#   OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
def _build_environ(scope: Scope, body: bytes, *, content_length: int) -> dict[str, Any]:
    server = scope.get("server") or ("localhost", 80)
    root_path = scope.get("root_path", "")
    path = scope["path"].removeprefix(root_path) or "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode().decode("latin-1"),
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("ascii"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"] = scope["client"][0]
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    # What the app is given (chunked bodies too; none where the body was refused).
    environ["CONTENT_LENGTH"] = str(content_length)
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return environ
