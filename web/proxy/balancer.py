"""Spread web's calls over every address the algorithm service's name resolves to.

A pooled keep-alive client resolves a name once per connection and then reuses the connection:
with `--scale algorithm=3` behind one DNS name, web's few long-lived connections stuck to one
or two replicas and a third never served. `BalancedTransport` resolves the name itself (again
every `resolve_seconds`, off the request path, since replicas come and go), keeps a keep-alive
pool per address, and sends each request to the next address in turn. An address that refused
or timed out a connection is skipped until the next resolution says otherwise, so a retry goes
to another replica.

Each address's pool is replaced after `connection_max_seconds` (the old one is closed once its
requests are done): behind a virtual IP (a Kubernetes ClusterIP service) the proxy balances
connections, not requests, and connections that live forever would keep a new replica idle.

A host that is an IP literal (the single-host default, 127.0.0.1) is never resolved, and a
request to it is not rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx

log = logging.getLogger(__name__)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver: DNS, /etc/hosts), in a fixed order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def connection_failed(exc: BaseException) -> bool:
    """True when no connection was made: nothing was sent, any request may go elsewhere."""
    # The aiohttp transport reports a refused connection (and a connect timeout) as
    # ConnectTimeout: look at the cause.
    return isinstance(exc, httpx.ConnectError) or isinstance(
        exc.__cause__, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
    )


def dropped_without_answer(exc: BaseException) -> bool:
    """True when the server closed or reset the connection before any byte of an answer.

    Typically a keep-alive connection the server closed as it was stopping, at the moment the
    request went out on it: the server did not process it, but a client cannot prove that, so
    only a request that is harmless to repeat may be sent again.
    """
    cause = exc.__cause__
    return isinstance(exc, httpx.RemoteProtocolError) or (
        isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        and not isinstance(cause, aiohttp.ClientConnectorError)
    )


@dataclass
class _AddressPool:
    transport: httpx.AsyncBaseTransport
    opened: float = field(default_factory=time.monotonic)


@dataclass
class _Service:
    addresses: list[str]
    resolved: float
    down_until: dict[str, float] = field(default_factory=dict)
    turn: int = 0
    refresh: asyncio.Task[None] | None = None


class BalancedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        make_transport: Callable[[], httpx.AsyncBaseTransport],
        *,
        resolve_seconds: float = 5.0,
        connection_max_seconds: float = 30.0,
        retire_after_seconds: float = 10.0,
        resolver: Resolver = resolve_all,
    ) -> None:
        self._make_transport = make_transport
        self._resolve_seconds = resolve_seconds
        self._connection_max_seconds = connection_max_seconds
        self._retire_after_seconds = retire_after_seconds  # longer than any one request
        self._resolver = resolver
        self._services: dict[tuple[str, int], _Service] = {}
        self._pools: dict[tuple[str, int], _AddressPool] = {}
        self._retiring: dict[asyncio.Task[None], httpx.AsyncBaseTransport] = {}
        self._literal: dict[str, bool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        literal = self._literal.get(host)
        if literal is None:
            literal = self._literal[host] = _is_ip(host)
        address = host if literal else await self._pick(host, port)
        if address != host:  # the Host header keeps the service's name
            request.url = request.url.copy_with(host=address)
        try:
            return await self._pool(address, port).handle_async_request(request)
        except httpx.TransportError as exc:
            if connection_failed(exc) and address != host:
                self._mark_down(host, port, address)
            raise

    async def _pick(self, host: str, port: int) -> str:
        service = self._services.get((host, port))
        if service is None:  # the first call waits for the name; later ones never do
            try:
                addresses = await self._resolver(host, port)
            except OSError as exc:  # e.g. the name does not exist (yet): like a refused connection
                raise httpx.ConnectError(f"{host} cannot be resolved: {exc}") from exc
            if not addresses:
                raise httpx.ConnectError(f"{host} resolves to no address")
            service = self._services[(host, port)] = _Service(addresses, time.monotonic())
        now = time.monotonic()
        if now - service.resolved >= self._resolve_seconds and (
            service.refresh is None or service.refresh.done()
        ):
            service.refresh = asyncio.get_running_loop().create_task(self._resolve(host, port))
        candidates = [a for a in service.addresses if service.down_until.get(a, 0) <= now]
        candidates = candidates or service.addresses  # all down: try them anyway
        if not candidates:
            raise httpx.ConnectError(f"{host} resolves to no address")
        service.turn += 1
        return candidates[service.turn % len(candidates)]

    async def _resolve(self, host: str, port: int) -> None:
        service = self._services[(host, port)]
        try:
            addresses = await self._resolver(host, port)
        except OSError as exc:  # keep the addresses we have; try again next interval
            log.warning("resolving %s failed (%s); keeping %s", host, exc, service.addresses)
            service.resolved = time.monotonic()
            return
        if addresses != service.addresses:
            log.info("%s now resolves to %s", host, ", ".join(addresses) or "nothing")
            for gone in set(service.addresses) - set(addresses):
                self._retire((gone, port))
                service.down_until.pop(gone, None)
        # A skip mark outlives a new answer: a stopping replica refuses connections while the
        # name still lists it. It runs out within resolve_seconds.
        service.addresses, service.resolved = addresses, time.monotonic()

    def _mark_down(self, host: str, port: int, address: str) -> None:
        service = self._services.get((host, port))
        if service is not None:
            service.down_until[address] = time.monotonic() + self._resolve_seconds
            service.resolved = 0.0  # resolve again on the next call: it may be gone
        self._retire((address, port))

    def _pool(self, address: str, port: int) -> httpx.AsyncBaseTransport:
        key = (address, port)
        pool = self._pools.get(key)
        if pool is not None and (
            self._connection_max_seconds <= 0
            or time.monotonic() - pool.opened < self._connection_max_seconds
        ):
            return pool.transport
        self._retire(key)
        pool = self._pools[key] = _AddressPool(self._make_transport())
        return pool.transport

    def _retire(self, key: tuple[str, int]) -> None:
        """Take an address's pool out of use; close it once its requests have had their time."""
        pool = self._pools.pop(key, None)
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(self._close_later(pool.transport))
        self._retiring[task] = pool.transport
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def _close_later(self, transport: httpx.AsyncBaseTransport) -> None:
        await asyncio.sleep(self._retire_after_seconds)
        await transport.aclose()

    async def aclose(self) -> None:
        for service in self._services.values():
            if service.refresh is not None:
                service.refresh.cancel()
        pools = [pool.transport for pool in self._pools.values()]
        for task, transport in list(self._retiring.items()):
            task.cancel()
            pools.append(transport)
        self._pools.clear()
        for transport in pools:
            with contextlib.suppress(Exception):
                await transport.aclose()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
