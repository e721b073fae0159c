"""Hostile and slow clients against both live services, with deadlines short enough to wait out.

Raw sockets, since the point is what a well-behaved HTTP client never does: announce a body and
not send it, trickle it, stop half-way through a header, or hold many connections.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import ServiceStarter, wait_until

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
SLACK = 2.0  # a loaded machine's scheduling, on top of a deadline
SHORT_DEADLINES = {
    "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    "MAX_CONNECTIONS_PER_WORKER": str(MAX_CONNECTIONS),
    "BODY_BUDGET_BYTES": str(1 << 20),
}


@pytest.fixture(scope="module")
def services(
    start_module_service: ServiceStarter, test_database_url: str
) -> dict[str, tuple[str, int]]:
    """web and the algorithm service, one worker each, with short deadlines: (host, port).
    Started side by side (seconds of imports each)."""
    starting = {
        "web": start_module_service.launch(
            "web", DATABASE_URL=test_database_url, **SHORT_DEADLINES
        ),
        "algorithm": start_module_service.launch("algorithm", **SHORT_DEADLINES),
    }
    return {name: _address(service.wait()) for name, service in starting.items()}


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


@pytest.fixture
def connections() -> Iterator[Callable[[tuple[str, int]], socket.socket]]:
    """Opens connections that are all closed after the test."""
    opened: list[socket.socket] = []

    def open_one(address: tuple[str, int]) -> socket.socket:
        opened.append(connect(address))
        return opened[-1]

    yield open_one
    for sock in opened:
        sock.close()


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return answer.status, json.loads(answer.read())


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed `sock` (reading whatever it answered first)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def token_header(service: str, token: str) -> tuple[str, ...]:
    return (f"Authorization: Bearer {token}",) if service == "algorithm" else ()


PREDICT = {"web": "/api/predict/", "algorithm": "/predict"}


def test_a_large_chunked_body_to_a_probe_is_cut_off_with_413_without_being_read(
    services: dict[str, tuple[str, int]], connections: Callable[..., socket.socket]
) -> None:
    sock = connections(services["web"])
    sock.sendall(head("POST", "/health/live", "Transfer-Encoding: chunked"))
    mib = b"x" * (1 << 20)
    chunk = b"%x\r\n%s\r\n" % (len(mib), mib)
    sent, started = 0, time.monotonic()
    while sent < 256 * len(mib):  # what the server took before this change: all of it
        readable, writable, _ = select.select([sock], [sock], [], 1)
        if readable:
            break  # it answered
        if writable:
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
    status, body = read_answer(sock)
    assert (status, body["error"]) == (413, "payload_too_large")
    assert "takes no body" in body["detail"]
    assert sent < 64 * len(mib)  # a few MiB sat in socket buffers; the server read 4 KiB
    assert time.monotonic() - started < SLACK


@pytest.mark.parametrize(
    ("service", "path", "code"),
    [
        ("web", "/api/predict/", "payload_too_large"),
        ("web", "/api/data/import", "payload_too_large"),
        ("algorithm", "/predict", "request_entity_too_large"),
        ("algorithm", "/train", "request_entity_too_large"),
    ],
)
def test_a_content_length_over_the_route_cap_is_answered_413_before_the_body(
    services: dict[str, tuple[str, int]], service_token: str, service: str, path: str, code: str
) -> None:
    with connect(services[service]) as sock:
        announced = "Content-Length: 10000000000"  # 10 GB, never sent
        sock.sendall(head("POST", path, announced, *token_header(service, service_token)))
        status, body = read_answer(sock)
    assert (status, body["error"]) == (413, code)


def test_the_algorithm_refuses_a_tokenless_body_with_401_before_reading_it(
    services: dict[str, tuple[str, int]],
) -> None:
    with connect(services["algorithm"]) as sock:
        sock.settimeout(SLACK)  # the old service waited for all 32 MiB
        sock.sendall(head("POST", "/predict", "Content-Length: 33554432"))
        status, body = read_answer(sock)
    assert (status, body["error"]) == (401, "unauthorized")


@pytest.mark.parametrize("service", ["web", "algorithm"])
def test_a_trickled_body_is_answered_408_and_closed_at_the_body_deadline(
    services: dict[str, tuple[str, int]], service_token: str, service: str
) -> None:
    with connect(services[service]) as sock:
        announced = ("Content-Type: application/json", "Content-Length: 100")
        sock.sendall(
            head("POST", PREDICT[service], *announced, *token_header(service, service_token))
        )
        started = time.monotonic()
        for byte in b'{"text": "':  # a byte every quarter second, never the whole body
            readable, _, _ = select.select([sock], [], [], 0.25)
            if readable:
                break
            sock.sendall(bytes([byte]))
        status, body = read_answer(sock)
        assert (status, body["error"]) == (408, "request_timeout")
        assert time.monotonic() - started < BODY_TIMEOUT + SLACK
        assert closed_within(sock, SLACK) < SLACK


@pytest.mark.parametrize("service", ["web", "algorithm"])
def test_a_half_sent_header_is_cut_off_at_the_header_deadline(
    services: dict[str, tuple[str, int]], service: str
) -> None:
    with connect(services[service]) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
        assert closed_within(sock, HEADER_TIMEOUT + SLACK) < HEADER_TIMEOUT + SLACK


@pytest.mark.parametrize("service", ["web", "algorithm"])  # uvicorn and Hypercorn
def test_connections_over_the_cap_are_turned_away_with_503_and_admitted_again_once_freed(
    services: dict[str, tuple[str, int]], connections: Callable[..., socket.socket], service: str
) -> None:
    held = [connections(services[service]) for _ in range(MAX_CONNECTIONS)]
    for sock in held:  # each one accepted and in use (the header deadline would close idle ones)
        sock.sendall(head("GET", "/health/live"))
        assert read_answer(sock)[0] == 200
    with connect(services[service]) as extra:
        extra.sendall(head("GET", "/health/live"))
        status, body = read_answer(extra)
    assert (status, body["error"]) == (503, "too_many_connections")
    for sock in held:
        sock.close()

    def admitted() -> bool:
        with connect(services[service]) as sock:
            sock.sendall(head("GET", "/health/live"))
            return read_answer(sock)[0] == 200

    # Hypercorn lets go of a connection its client closed when its idle timer (the header
    # deadline) runs out.
    wait_until(admitted, timeout=HEADER_TIMEOUT + SLACK, interval=0.1, what="admitted again")


def test_stalled_uploads_share_one_budget_and_small_bodies_still_pass(
    services: dict[str, tuple[str, int]], connections: Callable[..., socket.socket]
) -> None:
    json_type = "Content-Type: application/json"
    stalled = [connections(services["web"]) for _ in range(2)]
    for sock in stalled:  # 768 KiB each of 2 MiB, then nothing: together over the 1 MiB budget
        sock.sendall(head("POST", "/api/predict/", json_type, f"Content-Length: {2 << 20}"))
        sock.sendall(b"x" * (768 << 10))
    with connect(services["web"]) as small:  # meanwhile a small body is read, and answered
        body = b'{"text": "hello"}'
        small.sendall(head("POST", "/api/predict/", json_type, f"Content-Length: {len(body)}"))
        small.sendall(body)
        assert read_answer(small)[0] == 401  # past the body's guard: no token
    answers = sorted(read_answer(sock) for sock in stalled)
    assert [(status, body["error"]) for status, body in answers] == [
        (408, "request_timeout"),  # the one that fitted, at its deadline
        (503, "server_busy"),  # the one that did not, at once
    ]
