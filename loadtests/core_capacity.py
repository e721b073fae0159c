"""What one core serves: the capacity figures docs/scaling.md plans replicas with.

The measured server runs one server process (`ALGORITHM_WORKERS=1` or `WEB_WORKERS=1`) pinned
to core 0 with `taskset`; the load generator (wrk, one thread) and everything else (Redis,
PostgreSQL, this script, and for web the algorithm service behind it) are pinned to core 1. The
figure that plans replicas is requests per second of the server's own CPU time (user + system
of its process tree, from /proc), which holds on a shared machine where the server gets only a
part of its core; requests per wall-clock second are printed beside it. The model and bodies
are the bench's (loadtests/bench_data.py: TF-IDF + linear model on 6 400 Debian package
descriptions; one short description per request, or 1 000).

    python -m loadtests.core_capacity [--rounds 3] [--seconds 10] [--server algorithm web]

Needs two cores, wrk and taskset.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.harness.scratch import free_port, make_scratch_dir
from core.process import spawn, stop_children
from loadtests import bench_data
from loadtests.bench import announce, start_databases
from loadtests.bench_servers import HOST, BenchEnv, Server, wait_until_answers
from loadtests.wrk import WrkResult, run_wrk

SERVER_CORE, LOAD_CORE = 0, 1


def start_pinned(
    env: BenchEnv, service: str, core: int, extra: dict[str, str], path: str, probe: bytes
) -> Server:
    """`python -m SERVICE` with one server process, on `core` only, answering `probe`."""
    port = free_port(HOST)
    prefix = service.upper()
    extra = {f"{prefix}_HOST": HOST, f"{prefix}_PORT": str(port), f"{prefix}_WORKERS": "1", **extra}
    argv = ["taskset", "-c", str(core), sys.executable, "-m", service]
    log = env.log_path(f"{service}-core-{core}")
    child = spawn(service, argv, env={**env.service_env(), **extra}, log_path=log)
    server = Server([child], f"http://{HOST}:{port}", path)
    try:
        wait_until_answers(server, probe, log, headers=headers_for(env, service))
    except BaseException:
        server.stop()
        raise
    return server


def headers_for(env: BenchEnv, service: str) -> dict[str, str]:
    """The algorithm service takes web's service token; web a user's (reader) token."""
    token = env.api_token if service == "web" else env.service_token
    return {"Authorization": f"Bearer {token}"}


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by `root` and its live descendants.

    The server pool starts each worker in a session of its own, so the tree is followed by
    parent ids, not by process group.
    """
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, cpu seconds)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        # After the command: state, ppid, ..., utime and stime at 11 and 12.
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total, frontier = {root}, 0.0, [root]
    while frontier:
        parent = frontier.pop()
        total += stats.get(parent, (0, 0.0))[1]
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return total


@dataclass(frozen=True)
class Run:
    """One wrk run and the CPU time the measured server spent meanwhile."""

    wrk: WrkResult
    server_cpu_seconds: float

    @property
    def per_cpu_second(self) -> float:
        """Successful requests per second of server CPU: what one busy core serves."""
        return (self.wrk.requests - self.wrk.errors) / max(self.server_cpu_seconds, 0.01)


def measure(
    server: Server,
    bodies: bench_data.Bodies,
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> Run:
    root = server.children[-1].pid
    load = functools.partial(
        run_wrk,
        server.url,
        bodies.path,
        connections=connections,
        timeout_seconds=30.0,
        headers=headers,
    )
    load(seconds=2)  # warm-up, discarded
    cpu_before = tree_cpu_seconds(root)
    result = load(seconds=seconds)
    return Run(result, tree_cpu_seconds(root) - cpu_before)


def describe(label: str, runs: list[Run], texts: int) -> str:
    def median(values: list[float]) -> str:
        each = ", ".join(f"{value * texts:,.0f}" for value in values)
        return f"{statistics.median(values) * texts:,.0f} ({each})"

    wall = [run.wrk.ok_per_second for run in runs]
    per_cpu = [run.per_cpu_second for run in runs]
    busy = [run.server_cpu_seconds / (run.wrk.duration_us / 1e6) for run in runs]
    p99 = statistics.median(run.wrk.p99_us / 1000 for run in runs)
    errors = sum(run.wrk.errors for run in runs)
    return (
        f"{label}: texts per server CPU-second {median(per_cpu)}; texts/s {median(wall)}; "
        f"server cores busy {statistics.median(busy):.2f}; p99 {p99:.0f} ms; errors {errors}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument(
        "--server", nargs="+", choices=["algorithm", "web"], default=["algorithm", "web"]
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
        print("error: needs two cores and taskset (util-linux)", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {LOAD_CORE})  # inherited by Redis, PostgreSQL and wrk
    work_dir = make_scratch_dir("textclf-capacity-")
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    corpus = bench_data.load_corpus()
    version = bench_data.publish(env.model_root, bench_data.train(corpus, seed=1), seed=1)
    single = bench_data.write_bodies(corpus, work_dir, texts=1)
    batch = bench_data.write_bodies(corpus, work_dir, texts=1_000)
    probe = single.lines()[0]
    databases = start_databases(env, postgres="web" in args.server)
    runs: dict[str, list[Run]] = {}
    servers: list[Server] = []
    try:
        announce(env, version)
        if "algorithm" in args.server:
            servers.append(start_pinned(env, "algorithm", SERVER_CORE, {}, "/predict", probe))
            headers = headers_for(env, "algorithm")
            for round_no in range(1, args.rounds + 1):
                one = measure(servers[-1], single, headers, args.connections, args.seconds)
                many = measure(servers[-1], batch, headers, args.batch_connections, args.seconds)
                runs.setdefault("algorithm", []).append(one)
                runs.setdefault("algorithm_batch", []).append(many)
                print(f"algorithm round {round_no}: {one} / {many}", flush=True)
            stop_children(servers.pop().children)
        if "web" in args.server:
            # web on the measured core; the algorithm service behind it on the load's core.
            upstream = start_pinned(env, "algorithm", LOAD_CORE, {}, "/predict", probe)
            servers.append(upstream)
            extra = {"ALGORITHM_URL": upstream.base_url}
            servers.append(start_pinned(env, "web", SERVER_CORE, extra, "/api/predict/", probe))
            headers = headers_for(env, "web")
            for round_no in range(1, args.rounds + 1):
                one = measure(servers[-1], single, headers, args.connections, args.seconds)
                runs.setdefault("web", []).append(one)
                print(f"web round {round_no}: {one}", flush=True)
    finally:
        for server in reversed(servers):
            server.stop()
        stop_children(databases)
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"1-minute load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")
    labels = {
        "algorithm": (f"algorithm /predict, one text, -c{args.connections}", 1),
        "algorithm_batch": (f"algorithm /predict, 1 000 texts, -c{args.batch_connections}", 1_000),
        "web": (f"web /api/predict/, one text, -c{args.connections}", 1),
    }
    for name, measured in runs.items():
        print(describe(labels[name][0], measured, labels[name][1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
