"""The WSGI environ FlaskASGI builds from an ASGI scope (algorithm/service/event_loop.py).

The builder is derived from Hypercorn's (`hypercorn/app_wrappers.py`): tested on its own, next
to Hypercorn's for the same scopes, and through Flask, where a view sees it as `request`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from flask import jsonify, request
from hypercorn.app_wrappers import _build_environ as hypercorn_environ

from algorithm.service.event_loop import FlaskASGI, LoopFlask, _build_environ

Scope = dict[str, Any]


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> Scope:
    """An HTTP scope as Hypercorn hands it to an ASGI app."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.7", 50123),
        "server": ("127.0.0.1", 8001),
    }
    return {**scope, **extra}


def test_a_request_line_and_its_server_become_cgi_variables() -> None:
    scope = http_scope("/train/abc", method="POST", query=b"top_k=2&x=%C3%A9")

    environ = _build_environ(scope, b"", content_length=0)

    assert environ["REQUEST_METHOD"] == "POST"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/train/abc")
    assert environ["QUERY_STRING"] == "top_k=2&x=%C3%A9"  # as sent, still percent-encoded
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8001")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.7"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.errors"] is sys.stderr
    assert not environ["wsgi.multithread"] and not environ["wsgi.run_once"]


def test_without_server_or_client_the_defaults_are_localhost_and_no_remote_address() -> None:
    scope = http_scope(scheme="https")
    del scope["server"], scope["client"]

    environ = _build_environ(scope, b"", content_length=0)

    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    assert "REMOTE_ADDR" not in environ
    assert environ["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    ("root_path", "path", "script_name", "path_info"),
    [
        ("/algo", "/algo/predict", "/algo", "/predict"),
        ("/algo", "/algo", "/algo", "/"),  # the root itself is "/" under it
        ("/algo", "/predict", "/algo", "/predict"),  # not under the root: passed on whole
        ("", "/", "", "/"),
    ],
)
def test_the_root_path_is_the_script_name_and_the_rest_the_path_info(
    root_path: str, path: str, script_name: str, path_info: str
) -> None:
    environ = _build_environ(http_scope(path, root_path=root_path), b"", content_length=0)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)


def test_a_non_ascii_path_is_its_utf8_bytes_read_as_latin1() -> None:
    """PEP 3333's "bytes as latin-1" strings; Werkzeug decodes them back (see the Flask test)."""
    environ = _build_environ(http_scope("/ré/train/é", root_path="/ré"), b"", content_length=0)
    assert environ["SCRIPT_NAME"] == "/r\xc3\xa9"
    assert environ["PATH_INFO"] == "/train/\xc3\xa9"


def test_headers_become_http_variables_and_repeats_are_joined() -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"999"),  # the claim; the environ says what came
        (b"transfer-encoding", b"chunked"),
        (b"x-request-id", b"abc"),
        (b"accept", b"text/html"),
        (b"accept", b"application/json"),
        (b"x-name", "Zoë".encode("latin-1")),
    ]
    body = b'{"text": "hello"}'

    environ = _build_environ(
        http_scope("/predict", method="POST", headers=headers), body, content_length=len(body)
    )

    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert "HTTP_TRANSFER_ENCODING" not in environ  # the body is whole by now
    assert environ["HTTP_X_REQUEST_ID"] == "abc"
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"
    assert environ["HTTP_X_NAME"] == "Zoë"
    assert environ["wsgi.input"].read() == body


@pytest.mark.parametrize(
    "scope",
    [
        http_scope(
            "/predict",
            method="POST",
            query=b"a=1&a=2",
            headers=[(b"content-type", b"application/json"), (b"x-a", b"1"), (b"x-a", b"2")],
        ),
        http_scope("/algo/train/é", root_path="/algo", scheme="https"),
        http_scope("/", http_version="2", server=("::1", 443)),
    ],
)
def test_everything_else_is_as_hypercorn_builds_it(scope: Scope) -> None:
    """Equal to Hypercorn's builder but for the differences the source comment names."""
    ours = _build_environ(scope, b"body", content_length=4)
    theirs = hypercorn_environ(scope, b"body")  # type: ignore[arg-type]
    differ = {"SERVER_PORT", "CONTENT_LENGTH", "wsgi.input", "wsgi.errors", "wsgi.multithread"}
    assert ours["SERVER_PORT"] == str(theirs["SERVER_PORT"])
    assert ours["wsgi.input"].read() == theirs["wsgi.input"].read() == b"body"
    assert {k: v for k, v in ours.items() if k not in differ} == {
        k: v for k, v in theirs.items() if k not in differ
    }


# Through Flask: what a view sees as `request`.


def echo_app() -> FlaskASGI:
    app = LoopFlask(__name__)

    def seen() -> Any:
        return jsonify(
            path=request.path,
            script_root=request.script_root,
            url=request.url,
            args=request.args.to_dict(flat=False),
            headers={name: request.headers.get(name) for name in ("X-Request-Id", "Accept")},
            host=request.host,
            remote_addr=request.remote_addr,
            content_type=request.content_type,
            body=request.get_data(as_text=True),
        )

    @app.route("/sync/<path:rest>", methods=["GET", "POST"])
    def sync_view(rest: str) -> Any:
        return seen()

    @app.route("/async/<path:rest>", methods=["GET", "POST"])
    async def async_view(rest: str) -> Any:
        await asyncio.sleep(0)  # on the serving loop, then back into Flask
        return seen()

    return FlaskASGI(app, max_body_bytes=1024)


def call(app: FlaskASGI, scope: Scope, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app, the body in two chunks; (status, headers, body)."""
    if body:  # as an HTTP/1.1 client announces it
        scope = {**scope, "headers": [*scope["headers"], (b"transfer-encoding", b"chunked")]}
    incoming = [
        {"type": "http.request", "body": body[:3], "more_body": True},
        {"type": "http.request", "body": body[3:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, answer = sent
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, answer["body"]


@pytest.mark.parametrize("view", ["sync", "async"])
def test_a_flask_view_sees_the_request_it_was_sent(view: str) -> None:
    body = '{"text": "héllo"}'.encode()
    scope = http_scope(
        f"/algo/{view}/ré/train",
        root_path="/algo",
        method="POST",
        query=b"top_k=2&tag=a&tag=b&q=%C3%A9+x",
        headers=[
            (b"host", b"models.internal:8001"),
            (b"content-type", b"application/json; charset=utf-8"),
            (b"x-request-id", b"req-1"),
            (b"accept", b"text/html"),
            (b"accept", b"application/json"),
        ],
    )

    status, _, answer = call(echo_app(), scope, body)

    assert status == 200, answer
    seen = json.loads(answer)
    assert seen["path"] == f"/{view}/ré/train"
    assert seen["script_root"] == "/algo"
    url = f"http://models.internal:8001/algo/{view}/ré/train?top_k=2&tag=a&tag=b&q=é+x"
    assert seen["url"] == url  # Werkzeug's IRI: decoded
    assert seen["args"] == {"top_k": ["2"], "tag": ["a", "b"], "q": ["é x"]}
    assert seen["headers"] == {"X-Request-Id": "req-1", "Accept": "text/html,application/json"}
    assert seen["host"] == "models.internal:8001"
    assert seen["remote_addr"] == "127.0.0.7"
    assert seen["content_type"] == "application/json; charset=utf-8"
    assert seen["body"] == '{"text": "héllo"}'


def test_without_a_host_header_flask_names_the_server_from_the_scope() -> None:
    status, _, answer = call(echo_app(), http_scope("/sync/x", server=("127.0.0.1", 8001)))
    assert status == 200 and json.loads(answer)["host"] == "127.0.0.1:8001"


def test_a_body_over_the_limit_is_answered_413_by_flask() -> None:
    status, _, _ = call(echo_app(), http_scope("/sync/x", method="POST"), b"x" * 2000)
    assert status == 413
