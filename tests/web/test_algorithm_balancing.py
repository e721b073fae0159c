"""web's algorithm client over several replicas of one service name, on loopback addresses.

Replicas are real HTTP servers on 127.0.0.2, 127.0.0.3, ... (one port, one name); the name's
resolution is injected, as Docker's DNS would answer it for `--scale algorithm=3`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.harness.scratch import free_port
from core.pool import pool_command
from web.errors import AlgorithmUnavailable
from web.proxy.algorithm_client import AlgorithmClient

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "algorithm.test"


class Replicas:
    """aiohttp servers on loopback addresses that count calls and client connections."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.connections: dict[str, set[int]] = {}
        self.runners: dict[str, web.AppRunner] = {}

    async def start(self, address: str, port: int) -> None:
        async def predict(request: web.Request) -> web.Response:
            texts = (await request.json())["texts"]
            self.calls[address] += 1
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.connections.setdefault(address, set()).add(peer[1] if peer else 0)
            return web.json_response({"labels": ["x"] * len(texts), "model_version": address})

        app = web.Application()
        app.router.add_post("/predict", predict)
        runner = self.runners[address] = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()

    async def stop(self, address: str) -> None:
        await self.runners.pop(address).cleanup()


@asynccontextmanager
async def replicas_on(addresses: list[str], port: int) -> AsyncIterator[Replicas]:
    replicas = Replicas()
    for address in addresses:
        await replicas.start(address, port)
    try:
        yield replicas
    finally:
        for address in list(replicas.runners):
            await replicas.stop(address)


def client_for(port: int, resolve: Callable[[], list[str]], **options: Any) -> AlgorithmClient:
    async def resolver(host: str, _: int) -> list[str]:
        assert host == SERVICE
        return resolve()

    return AlgorithmClient(
        f"http://{SERVICE}:{port}", timeout=2.0, connect_retries=2, resolver=resolver, **options
    )


async def predict_many(client: AlgorithmClient, callers: int, each: int) -> list[str]:
    """`callers` concurrent users, each predicting `each` texts one after the other."""

    async def user() -> list[str]:
        return [(await client.predict_one("some text")).body["model_version"] for _ in range(each)]

    return [
        version
        for answers in await asyncio.gather(*(user() for _ in range(callers)))
        for version in answers
    ]


def test_predictions_spread_evenly_over_every_address_of_the_name() -> None:
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = free_port()

    async def scenario() -> Replicas:
        async with replicas_on(addresses, port) as replicas:
            client = client_for(port, lambda: addresses)
            answered = await predict_many(client, callers=16, each=40)
            await client.aclose()
        assert len(answered) == 640
        return replicas

    calls = asyncio.run(scenario()).calls
    mean = sum(calls.values()) / len(addresses)
    assert set(calls) == set(addresses)
    assert all(abs(calls[a] - mean) <= 0.25 * mean for a in addresses), calls


def test_a_new_replica_gets_calls_and_a_removed_one_none_after_the_name_is_resolved_again() -> None:
    port = free_port()
    listed = ["127.0.0.2", "127.0.0.3"]

    async def scenario() -> tuple[Counter[str], Counter[str]]:
        async with replicas_on(["127.0.0.2", "127.0.0.3", "127.0.0.4"], port) as replicas:
            client = client_for(port, lambda: list(listed), resolve_seconds=0.1)
            await predict_many(client, callers=4, each=10)
            before = Counter(replicas.calls)
            listed[:] = ["127.0.0.3", "127.0.0.4"]  # one replica replaced by another
            await asyncio.sleep(0.15)
            await predict_many(client, callers=1, each=2)  # the name is resolved again
            await asyncio.sleep(0.05)
            replicas.calls.clear()
            await predict_many(client, callers=4, each=10)
            await client.aclose()
            return before, replicas.calls

    before, after = asyncio.run(scenario())
    assert set(before) == {"127.0.0.2", "127.0.0.3"}
    assert set(after) == {"127.0.0.3", "127.0.0.4"}


def test_connections_are_replaced_after_their_maximum_age() -> None:
    """Behind a virtual IP, a new connection is how a new replica gets its share."""
    port = free_port()

    async def scenario() -> Replicas:
        async with replicas_on(["127.0.0.2"], port) as replicas:
            client = client_for(port, lambda: ["127.0.0.2"], connection_max_seconds=0.1)
            for _ in range(4):
                await predict_many(client, callers=1, each=5)
                await asyncio.sleep(0.12)
            await client.aclose()
        return replicas

    replicas = asyncio.run(scenario())
    assert replicas.calls["127.0.0.2"] == 20
    assert len(replicas.connections["127.0.0.2"]) >= 4  # one connection per age, not one in all


def test_a_refused_address_is_skipped_and_its_calls_go_to_the_others() -> None:
    port = free_port()

    async def scenario() -> tuple[list[str], Counter[str]]:
        # 127.0.0.4 is listed but nothing listens there: connections are refused.
        async with replicas_on(["127.0.0.2", "127.0.0.3"], port) as replicas:
            client = client_for(port, lambda: ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
            answered = await predict_many(client, callers=8, each=20)
            await client.aclose()
            return answered, replicas.calls

    answered, calls = asyncio.run(scenario())
    assert len(answered) == 160 and set(answered) == {"127.0.0.2", "127.0.0.3"}
    assert set(calls) == {"127.0.0.2", "127.0.0.3"}


def test_when_every_address_refuses_the_caller_gets_503() -> None:
    port = free_port()

    async def scenario() -> None:
        client = client_for(
            port,
            lambda: ["127.0.0.2", "127.0.0.3"],
        )
        with pytest.raises(AlgorithmUnavailable):
            await client.predict_one("text")
        await client.aclose()

    asyncio.run(scenario())


def test_a_name_that_does_not_resolve_is_503_and_is_tried_again_on_the_next_call() -> None:
    port = free_port()
    known: list[str] = []

    def resolve() -> list[str]:
        if not known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return known

    async def scenario() -> str:
        async with replicas_on(["127.0.0.2"], port):
            client = client_for(port, resolve)
            with pytest.raises(AlgorithmUnavailable):
                await client.call("POST", "/predict", json={"texts": ["a"]})
            known.append("127.0.0.2")  # the replica's name now exists
            answer = await client.predict_one("text")
            await client.aclose()
        return str(answer.body["model_version"])

    assert asyncio.run(scenario()) == "127.0.0.2"


def start_replica_pool(
    address: str, port: int, name: str, var_dir: Path, loaded_file: Path | None = None
) -> subprocess.Popen[str]:
    """A pool serving replica_app; with `loaded_file`, its start-up lasts until that file exists
    (it creates `loaded_file` + ".loading" when its start-up begins)."""
    loading = {
        "REPLICA_LOADED_FILE": str(loaded_file),
        "REPLICA_LOADING_FILE": f"{loaded_file}.loading",
    }
    env = {
        **os.environ,
        **(loading if loaded_file else {}),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}",
        "REPLICA_NAME": name,
        "VAR_DIR": str(var_dir),  # each pool its own metric files
    }
    command = pool_command("replica_app:app", host=address, port=port, workers=1)
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_sigterm_on_one_of_two_replicas_under_load_fails_no_request(tmp_path: Path) -> None:
    """The stopping pool finishes what it accepted, then exits; web resends the rest elsewhere."""
    port = free_port()
    pools = {
        name: start_replica_pool(address, port, name, tmp_path / name)
        for name, address in (("first", "127.0.0.2"), ("second", "127.0.0.3"))
    }
    failures: list[BaseException] = []
    answered: list[str] = []

    async def scenario() -> None:
        client = client_for(port, lambda: ["127.0.0.2", "127.0.0.3"], resolve_seconds=0.5)
        for _ in range(300):  # both pools up
            try:
                if {(await client.predict_one("t")).body["model_version"] for _ in range(4)} == {
                    "first",
                    "second",
                }:
                    break
            except AlgorithmUnavailable:
                pass
            await asyncio.sleep(0.1)
        stopping = asyncio.Event()

        async def user(single: bool) -> None:
            while not stopping.is_set():
                try:
                    if single:
                        answer = await client.predict_one("t")
                    else:
                        answer = await client.call("POST", "/predict", json={"texts": ["a", "b"]})
                    assert answer.status == 200, answer.body
                    answered.append(answer.body["model_version"])
                except Exception as exc:  # noqa: BLE001 - every failure counts
                    failures.append(exc)

        users = [asyncio.create_task(user(single=i % 2 == 0)) for i in range(16)]
        await asyncio.sleep(1.0)
        pools["first"].send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, pools["first"].wait, 30)
        await asyncio.sleep(0.5)
        stopping.set()
        await asyncio.gather(*users)
        await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        for pool in pools.values():
            if pool.poll() is None:
                pool.send_signal(signal.SIGTERM)
            pool.communicate(timeout=30)
    assert failures == []
    assert pools["first"].returncode == 0
    served = Counter(answered)
    assert served["first"] > 0 and served["second"] > 0, served
    assert answered[-20:] == ["second"] * 20  # after it exited, only the other one answered


@pytest.mark.slow
def test_a_replica_still_starting_refuses_connections_and_its_calls_go_to_a_started_one(
    tmp_path: Path,
) -> None:
    """Not accepted into a backlog to wait for a model: every call is answered at once."""
    port = free_port()
    loaded = tmp_path / "model-loaded"  # the second replica starts until the test creates it
    started = start_replica_pool("127.0.0.2", port, "started", tmp_path / "a")
    starting = start_replica_pool("127.0.0.3", port, "starting", tmp_path / "b", loaded)

    async def scenario() -> list[str]:
        client = client_for(port, lambda: ["127.0.0.2", "127.0.0.3"])
        for _ in range(300):  # the first one up
            try:
                await client.predict_one("t")
                break
            except AlgorithmUnavailable:
                await asyncio.sleep(0.1)
        for _ in range(3000):  # the second has bound its socket and is starting
            if Path(f"{loaded}.loading").exists():
                break
            await asyncio.sleep(0.01)
        assert Path(f"{loaded}.loading").exists(), "the second replica never began its start-up"
        answers = await asyncio.wait_for(predict_many(client, callers=8, each=10), timeout=10)
        await client.aclose()
        return answers

    try:
        answered = asyncio.run(scenario())
    finally:
        loaded.touch()  # its start-up ends, so it stops at once instead of when it would end
        for pool in (started, starting):
            pool.send_signal(signal.SIGTERM)
            pool.communicate(timeout=30)
    assert answered == ["started"] * 80
