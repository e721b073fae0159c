"""Web's CPU per prediction against its ceiling's, each server on core 0, from /proc.

Throughput on a shared machine swings with others' load; the CPU a server's processes spend
per answered request moves much less. This starts the bench's `web_pinned` (web on core 0, the
algorithm service on core 1) and `web_ceiling_pinned` (the constant view on core 0) in turn,
warms each up, loads it with wrk (-t1 -c64) and reads the utime+stime of the server's process
tree (/proc) before and after: microseconds of CPU per request, and for web the mean number of
texts per call to the algorithm service (its `textclf_web_coalesced_batch_size` metric).

    python -m loadtests.predict_cpu [--rounds 3] [--seconds 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from core.harness.scratch import make_scratch_dir
from core.process import stop_children
from loadtests import bench_data
from loadtests.bench import announce, start_databases
from loadtests.bench_servers import BY_NAME, BenchEnv, Server, start_server
from loadtests.wrk import run_wrk

SCENARIOS = ("web_pinned", "web_ceiling_pinned")
TICKS = os.sysconf("SC_CLK_TCK")
BATCH_METRIC = "textclf_web_coalesced_batch_size"
PY_SPY = Path(os.environ.get("PY_SPY", "py-spy"))


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(utime, stime) of `root` and every process below it, in seconds."""
    parents: dict[int, int] = {}
    times: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]), int(fields[12])
    user, system, frontier = 0, 0, [root]
    while frontier:
        pid = frontier.pop()
        user += times.get(pid, (0, 0))[0]
        system += times.get(pid, (0, 0))[1]
        frontier += [child for child, parent in parents.items() if parent == pid]
    return user / TICKS, system / TICKS


def batch_totals(server: Server) -> tuple[float, float]:
    """(texts, calls) coalesced so far, from web's /metrics (0, 0 where there is none)."""
    try:
        with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0, 0.0
    found = {
        name: float(value)
        for name, value in re.findall(
            rf"^{BATCH_METRIC}_(sum|count)(?:{{[^}}]*}})? (\S+)$", text, re.M
        )
    }
    return found.get("sum", 0.0), found.get("count", 0.0)


def profile_workers(
    root: int, args: argparse.Namespace, name: str
) -> subprocess.Popen[bytes] | None:
    """py-spy recording every process below `root` for the measured run (`--py-spy DIR`)."""
    if args.py_spy is None:
        return None
    args.py_spy.mkdir(parents=True, exist_ok=True)
    out = args.py_spy / f"{name}-{time.strftime('%H%M%S')}.txt"
    argv = [
        str(PY_SPY),
        "record",
        "--pid",
        str(root),
        "--subprocesses",
        "--gil",
        "--nonblocking",
        "--rate",
        "500",
    ]
    argv += ["--format", "raw", "--duration", str(round(args.seconds)), "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(
    name: str, env: BenchEnv, bodies: bench_data.Bodies, args: argparse.Namespace
) -> tuple[str, float]:
    scenario = BY_NAME[name]
    server = start_server(scenario, env, bodies.lines()[0])
    try:

        def load(seconds: float) -> tuple[int, int]:
            result = run_wrk(
                server.url,
                bodies.path,
                connections=64,
                seconds=seconds,
                timeout_seconds=5.0,
                headers=env.headers(scenario),
            )
            return result.requests, result.errors

        load(args.warmup)
        root = server.children[-1].pid
        spy = profile_workers(root, args, name)
        before, (texts, calls) = tree_cpu_seconds(root), batch_totals(server)
        requests, errors = load(args.seconds)
        user, system = (
            after - was for after, was in zip(tree_cpu_seconds(root), before, strict=True)
        )
        texts_after, calls_after = batch_totals(server)
        if spy is not None:
            spy.wait(timeout=args.seconds + 30)
    finally:
        server.stop()
    batch = (texts_after - texts) / (calls_after - calls) if calls_after > calls else 0.0
    per_request = (user + system) / max(requests, 1) * 1e6
    return (
        f"{name:20s} {per_request:6.0f} us CPU/request "
        f"({system / max(requests, 1) * 1e6:3.0f} in the kernel)  "
        f"{requests / args.seconds:7.0f} req/s  "
        f"errors {errors}  texts per call {batch:5.1f}"
    ), per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--py-spy", type=Path, help="record web's workers (collapsed stacks) here")
    args = parser.parse_args()
    work_dir = make_scratch_dir("predict-cpu-")
    corpus = bench_data.load_corpus()
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    version = bench_data.publish(env.model_root, bench_data.train(corpus, seed=1), seed=1)
    bodies = bench_data.write_bodies(corpus, work_dir, texts=1, top_k=None, protocol="native")
    databases = start_databases(env, postgres=True)
    per_request: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    try:
        announce(env, version)
        for round_no in range(1, args.rounds + 1):
            order = SCENARIOS if round_no % 2 else tuple(reversed(SCENARIOS))
            for name in order:
                line, value = measure(name, env, bodies, args)
                per_request[name].append(value)
                print(f"round {round_no}  {line}", flush=True)
    finally:
        stop_children(databases)
        shutil.rmtree(work_dir, ignore_errors=True)
    web, ceiling = (statistics.median(per_request[name]) for name in SCENARIOS)
    print(
        f"median: web {web:.0f} us, ceiling {ceiling:.0f} us, web adds {web - ceiling:.0f} us; "
        f"ceiling / web = {ceiling / web:.2f}"
    )


if __name__ == "__main__":
    main()
