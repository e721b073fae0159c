"""The CPU each request costs a server pool under wrk, per scenario, interleaved round by round.

`make bench` reports requests/s, which swing by 2x when other work shares the cores. The CPU
time the server's processes (the pool and its workers) spend per request moves far less with
load, and it includes what the in-process scripts leave out (Hypercorn's HTTP parsing). Each
round starts every scenario's server alone (loadtests/bench_servers.py, as the bench does),
warms it up, loads it with wrk for `--seconds` at `--connections`, and reads the processes'
utime+stime (/proc) before and after. For the algorithm service it also reads how many texts
each model call took (its batch size histogram, from /metrics).

    python -m loadtests.server_cpu [--rounds 3] [--seconds 6] [--connections 64] [--texts 1]
        [--scenario hello --scenario algorithm_hello --scenario algorithm] [--before DIR]
        [--breakdown]

`--texts N` sends N texts a body (`{"texts": [...]}`): with a few connections, what a call like
web's coalesced ones costs a server (web's two workers keep one call each in flight).

A scenario that calls another server (web's predictions call the algorithm service) also gets a
line with each pool's CPU per request, wrk's, and how many cores stood idle meanwhile
(`--breakdown` prints it for every scenario): where a shared machine's cores went.

`--py-spy PATH` records one worker of each loaded run with py-spy (raw stacks, held-GIL samples
only) into the scratch directory. `--before DIR` also runs each scenario from another checkout
of the code (a directory, e.g. `git archive REF | tar -x -C DIR`), as `<name>@before`, in the
same rounds.

The ratio of two scenarios' CPU per request is what their requests/s ratio tends to on a quiet
machine where the servers, not wrk, hold the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import urllib.request
from pathlib import Path

from core.harness.scratch import make_scratch_dir
from core.process import stop_children
from loadtests import bench_data
from loadtests.bench import announce, in_round_order, start_databases
from loadtests.bench_servers import BY_NAME, BenchEnv, Scenario, Server, start_server
from loadtests.predict_cpu import batch_totals
from loadtests.wrk import WrkResult, run_wrk

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_SCENARIOS = ("hello", "algorithm_hello", "algorithm")


def pool_pids(root: int) -> list[int]:
    """The pool's pid and its workers' (the root's children)."""
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    return [root, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids`, in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLOCK_TICKS


def machine_idle_seconds() -> float:
    """Idle time of every core so far (/proc/stat's idle and iowait), in seconds."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """utime + stime of this process's waited-for children (wrk's runs), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def texts_per_model_call(server: Server, headers: dict[str, str]) -> float | None:
    """The algorithm service's mean batch size so far, from /metrics (None elsewhere)."""
    request = urllib.request.Request(server.base_url + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    found = {
        name: float(value)
        for name, value in re.findall(r"^textclf_predict_batch_size_(sum|count) (\S+)$", text, re.M)
    }
    if not found.get("count"):
        return None
    return found["sum"] / found["count"]


def measure(
    scenario: Scenario, env: BenchEnv, bodies: bench_data.Bodies, args: argparse.Namespace
) -> tuple[float, float, float | None]:
    """(µs of server CPU per request, requests/s, texts per model call) of one loaded run."""
    server = start_server(scenario, env, bodies.lines()[0])
    headers = env.headers(scenario)
    try:

        def load(seconds: float) -> WrkResult:
            return run_wrk(
                server.url,
                bodies.path,
                connections=args.connections,
                seconds=seconds,
                timeout_seconds=5.0,
                headers=headers,
            )

        load(args.warmup)
        # Every pool the scenario started: web's and the algorithm service's it calls.
        pools = [pool_pids(child.pid) for child in server.children if child.running()]
        pids = pools[-1]
        before = cpu_seconds(pids)
        pools_before = [cpu_seconds(pool) for pool in pools]
        idle_before, wrk_before = machine_idle_seconds(), children_cpu_seconds()
        coalesced_before = batch_totals(server) if scenario.upstream else (0.0, 0.0)
        profiler = None
        if args.py_spy is not None:
            stacks = env.work_dir / f"{scenario.name}-{env.started}.stacks"
            profiler = subprocess.Popen(  # one worker of this pool: pids[1]
                [str(args.py_spy), "record", "--nonblocking", "--gil", "-r", "500", "-f", "raw"]
                + ["-d", str(round(args.seconds)), "-o", str(stacks), "-p", str(pids[1])],
                stdout=subprocess.DEVNULL,
            )
        result = load(args.seconds)
        used = cpu_seconds(pids) - before
        idle = machine_idle_seconds() - idle_before
        wrk = children_cpu_seconds() - wrk_before
        texts, calls = (
            map(operator.sub, batch_totals(server), coalesced_before)
            if scenario.upstream
            else (0.0, 0.0)
        )
        if len(pools) > 1 or args.breakdown:
            per_pool = ", ".join(
                f"{child.name} {(cpu_seconds(pool) - then) / result.requests * 1e6:.0f}"
                for child, pool, then in zip(server.children, pools, pools_before, strict=False)
            )
            print(
                f"  {scenario.name}: us/request by pool: {per_pool}; wrk "
                f"{wrk / result.requests * 1e6:.0f}; cores idle {idle / args.seconds:.2f} "
                f"of {os.cpu_count()}"
                + (f"; {texts / calls:.1f} texts per call upstream" if calls else ""),
                flush=True,
            )
        if profiler is not None:
            profiler.wait(timeout=60)
            print(f"py-spy stacks of {scenario.name}: {stacks}", flush=True)
        assert result.errors == 0, f"{scenario.name}: {result.errors} errors"
        batch = texts_per_model_call(server, headers)
        return used / result.requests * 1e6, result.ok_per_second, batch
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--texts", type=int, default=1, help="texts per body (default: one)")
    parser.add_argument("--scenario", action="append", choices=sorted(BY_NAME))
    parser.add_argument("--before", type=Path, help="another checkout, run side by side")
    parser.add_argument("--py-spy", type=Path, help="py-spy's path: profile one worker per run")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also print each pool's, wrk's and the idle cores' share (always with an upstream)",
    )
    args = parser.parse_args()
    table = {name: BY_NAME[name] for name in args.scenario or DEFAULT_SCENARIOS}
    if args.before is not None:
        for name, scenario in list(table.items()):
            before = dataclasses.replace(
                scenario, name=f"{name}@before", checkout=args.before.resolve()
            )
            table[before.name] = before
    names = list(table)
    work_dir = make_scratch_dir("server-cpu-")
    corpus = bench_data.load_corpus()
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    version = bench_data.publish(env.model_root, bench_data.train(corpus, seed=1), seed=1)
    bodies = bench_data.write_bodies(corpus, work_dir, texts=args.texts)
    databases = start_databases(
        env, postgres=any(name.startswith(("web", "data")) for name in names)
    )
    results: dict[str, list[tuple[float, float, float | None]]] = {name: [] for name in names}
    try:
        announce(env, version)
        for round_no in range(1, args.rounds + 1):
            for scenario in in_round_order(list(table.values()), round_no):
                results[scenario.name].append(measure(scenario, env, bodies, args))
                cpu, rate, batch = results[scenario.name][-1]
                texts = f", {batch:.1f} texts per model call" if batch else ""
                print(
                    f"round {round_no} {scenario.name:16s} {cpu:5.0f} us/request, "
                    f"{rate:6.0f} requests/s{texts}",
                    flush=True,
                )
    finally:
        stop_children(databases)
        if args.py_spy is None:  # else the profiles are there
            shutil.rmtree(work_dir, ignore_errors=True)
    first = names[0]
    print(f"medians over {args.rounds} rounds, {args.connections} connections:")
    for name in names:
        cpu = statistics.median(run[0] for run in results[name])
        ratios = [base[0] / run[0] for base, run in zip(results[first], results[name], strict=True)]
        print(
            f"  {name:16s} {cpu:5.0f} us/request; CPU of {first} / {name} per round: "
            + ", ".join(f"{ratio:.2f}" for ratio in ratios)
        )


if __name__ == "__main__":
    main()
