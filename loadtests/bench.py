"""`make bench`: the prediction servers side by side, interleaved, on this machine.

Trains the service's model (algorithm.ml.training) on 6 400 Debian package descriptions and
publishes it
into a temporary model root; then, round after round, starts each scenario's server alone on a
free 127.0.0.1 port, warms it up, loads it with wrk (-t1 -c64) and stops it. Ratios are taken
per round and their median is checked against the spec's targets (a warm named model against
`default` among them: the same trained model published again under another name); a hot swap
under load and a cold named model's first answers close the bench. A missed target is reported,
not fatal: the exit code is non-zero only when the harness fails (a server that does not start,
wrk missing, no corpus).

    python -m loadtests.bench [--rounds 3] [--seconds 10] [--scenario algorithm ...] [--docs FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import redis

from core import serving_protocol
from core.harness.embedded import (
    new_password,
    postgres_url,
    redis_url,
    start_postgres,
    start_redis,
)
from core.harness.scratch import free_port, make_scratch_dir
from core.process import Child, stop_children
from loadtests import bench_data
from loadtests import bench_report as report
from loadtests.bench_report import Results, Run
from loadtests.bench_servers import (
    BY_NAME,
    NAMED_MODEL,
    NATIVE_PROBE,
    SCENARIOS,
    BenchEnv,
    Scenario,
    start_server,
)
from loadtests.cold_start import ColdStartResult, cold_start_text, measure_cold_starts
from loadtests.hotswap import HotSwapResult, measure_hot_swap
from loadtests.web_commands import prepare_web_database, seed_data_rows
from loadtests.wrk import WrkResult, run_wrk, wrk_binary

SECTION_TITLE = "## Prediction throughput"
EXTRA_PARTS = ("hotswap", "cold_start")  # measured after the rounds, each once


def measure(
    scenario: Scenario, env: BenchEnv, bodies: bench_data.Bodies, args: argparse.Namespace
) -> WrkResult:
    """Start the scenario's server, warm it up, measure once with wrk, stop it."""
    batch = bodies.texts > 1
    server = start_server(scenario, env, bodies.lines()[0])
    load = functools.partial(
        run_wrk,
        server.url,
        bodies.path,
        connections=args.batch_connections if batch else args.connections,
        timeout_seconds=30.0 if batch else 5.0,
        headers=env.headers(scenario),
        method=scenario.method,
    )
    try:
        load(seconds=args.warmup)  # discarded: connections, caches and both workers warm up
        return load(seconds=args.seconds)
    finally:
        server.stop()


def announce(
    env: BenchEnv, champion: str, challenger: str | None = None, *, model: str = "default"
) -> None:
    """Move the aliases of `model` as the registry does; every algorithm process follows."""
    desired = serving_protocol.Desired(
        model=model, champion=champion, challenger=challenger, seq=time.time_ns()
    )
    with redis.Redis.from_url(env.redis_url) as client:
        serving_protocol.announce(client, desired)


def run_hotswap(
    env: BenchEnv, corpus: list[tuple[str, str]], bodies: bench_data.Bodies, seconds: float
) -> HotSwapResult:
    """Publish a model trained on another sample, make it champion while 64 connections predict."""
    trained = bench_data.train(corpus, seed=2)
    algorithm = BY_NAME["algorithm"]
    server = start_server(algorithm, env, bodies.lines()[0])

    def publish_champion() -> str:
        version = bench_data.publish(env.model_root, trained, seed=2)
        announce(env, version)
        return version

    try:
        return asyncio.run(
            measure_hot_swap(
                server.url,
                headers=env.headers(algorithm),
                publish=publish_champion,
                bodies=bodies.lines(),
                connections=64,
                seconds=seconds,
                publish_after=seconds / 3,
            )
        )
    finally:
        server.stop()


COLD_NAMES = 3  # fresh names whose first answer is timed


def run_cold_starts(env: BenchEnv, trained: bench_data.Trained, text: str) -> ColdStartResult:
    """A cold named model's first answer, for a few fresh names, on one algorithm server."""
    algorithm = BY_NAME["algorithm"]
    server = start_server(algorithm, env, NATIVE_PROBE)

    def publish_name(name: str) -> str:
        version = bench_data.publish(env.model_root, trained, seed=1, named=True)
        announce(env, version, model=name)
        return version

    def loaded(name: str) -> bool:
        with redis.Redis.from_url(env.redis_url) as client:
            return any(name in found.models for found in serving_protocol.read_reports(client))

    try:
        names = [f"bench-cold-{number}" for number in range(1, COLD_NAMES + 1)]
        return measure_cold_starts(
            server.url,
            headers=env.headers(algorithm),
            publish=publish_name,
            loaded=loaded,
            names=names,
            text=text,
        )
    finally:
        server.stop()


DATA_ROWS = 2_000


def start_databases(
    env: BenchEnv, *, postgres: bool, corpus: list[tuple[str, str]] | None = None
) -> list[Child]:
    """Redis for every server; PostgreSQL, migrated, when web is measured."""
    port, password = free_port(), new_password()
    log = env.log_path("redis")
    children = [start_redis(env.work_dir / "redis", port=port, password=password, log_path=log)]
    env.redis_url = redis_url(port=port, password=password)
    if postgres:
        port = free_port()
        log = env.log_path("postgres")
        pg_dir = env.work_dir / "postgres"
        children.append(
            start_postgres(pg_dir, port=port, database="bench", password=password, log_path=log)
        )
        env.database_url = postgres_url(port=port, database="bench", password=password)
        env.api_token = "tcf_" + secrets.token_urlsafe(32)
        prepare_web_database(env.service_env(), token=env.api_token, name="bench", role="reader")
        if corpus is not None:  # the data API's reads list these rows
            env.data_row_id = seed_data_rows(env.service_env(), corpus[:DATA_ROWS], env.work_dir)
    return children


def section(results: Results, args: argparse.Namespace, started: datetime, load: str) -> str:
    """The markdown section of docs/benchmarks.md: how it was measured, then the tables."""
    how = f"--rounds {args.rounds} --seconds {args.seconds:g}"
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    parts = [
        SECTION_TITLE,
        "",
        f"Written by `make bench` (`python -m loadtests.bench {how}`) on {started:%Y-%m-%d %H:%M}"
        f" UTC; the whole run took {minutes:.1f} min.",
        "",
        f"- Machine: {report.machine_description()}. Other processes may share it; only ratios "
        f"taken within one round are compared. 1-minute load average just before the run: {load} "
        "(anything well above 0 means other work competed for the cores).",
        f"- Model: the service's TF-IDF + linear model (`algorithm.ml.training`), trained on "
        f"{bench_data.TRAIN_ROWS:,} Debian package descriptions (`loadtests/corpus.py`), "
        "published with `publish_model_version` into a temporary model root and announced as "
        "champion (`core.serving_protocol`); the shadow scenarios' challenger is trained the "
        "same way on another sample.",
        f"- Load: `wrk -t1 -c{args.connections} -d{args.seconds:g}s` from this machine to "
        "127.0.0.1, POST of one short text, cycling through 2 000 descriptions "
        f"(`loadtests/wrk_post.lua`); batch: `-c{args.batch_connections}` (enough connections "
        "that both workers get some), 1 000 texts per body. Any answer outside 2xx, socket "
        "error or timeout counts as an error.",
        "- Why wrk: on 2 cores the load generator takes CPU from the servers it measures; wrk "
        "(C, one thread) costs a small part of a core where a Python generator (locust, an "
        "asyncio client) needs most of one and would cap what it can show.",
        f"- Procedure: rounds: {args.rounds}; in each, every scenario's server is started alone "
        f"on a free port, warmed up for {args.warmup:g} s, measured for {args.seconds:g} s and "
        "stopped, in the order below on odd rounds and in the reverse order on even ones (so "
        "no scenario always runs before the one it is compared with). Ratios are per round, then "
        "the median over rounds.",
    ]
    tables = [
        ("Targets", report.CHECK_HEADER, report.check_rows(results)),
        ("Medians", report.RUN_HEADER, report.median_rows(results)),
        ("Every run", report.RUN_HEADER, report.every_run_rows(results)),
    ]
    for title, header, rows in tables:
        parts += ["", f"### {title}", "", report.markdown_table(header, rows)]
    if results.hotswap is not None:
        parts += ["", "### Hot swap under load", "", report.hotswap_text(results.hotswap)]
    if results.cold is not None:
        parts += ["", "### A cold named model's first answer", "", cold_start_text(results.cold)]
    return "\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up time per run")
    parser.add_argument("--connections", type=int, default=64)
    # 8, not fewer: each worker has its own socket and the kernel hashes connections to them; with
    # 4 connections all of them land on one worker in about one run of eight.
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--hotswap-seconds", type=float, default=9.0)
    choices = [*BY_NAME, *EXTRA_PARTS]
    parser.add_argument("--scenario", action="append", choices=choices, help="default: all")
    parser.add_argument(
        "--docs",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="markdown file whose section gets the results (runs of every scenario only)",
    )
    parser.add_argument("--results-json", type=Path, default=Path("var/bench-results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    args.scenario = args.scenario or choices
    return args


def in_round_order(scenarios: Sequence[Scenario], round_no: int) -> list[Scenario]:
    """The scenarios in the order given on odd rounds, reversed on even ones.

    Two scenarios compared within a round then take turns at running first: on a machine whose
    speed drifts over the minutes a round takes, a fixed order would charge the drift to whichever
    runs later, every round.
    """
    return list(scenarios) if round_no % 2 else list(reversed(scenarios))


def run(args: argparse.Namespace, work_dir: Path) -> Results:
    """Every selected scenario, round by round, then the hot swap."""
    wrk_binary()
    corpus = bench_data.load_corpus()
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    selected = [scenario for scenario in SCENARIOS if scenario.name in args.scenario]
    challenger = None
    if any(
        scenario.name.startswith("shadow") for scenario in selected
    ):  # trained on another sample
        challenger = bench_data.publish(env.model_root, bench_data.train(corpus, seed=3), seed=3)
    trained = bench_data.train(corpus, seed=1)
    version = bench_data.publish(env.model_root, trained, seed=1)
    # The same model again as a version of the named model: only the name differs.
    named = bench_data.publish(env.model_root, trained, seed=1, named=True)
    print(
        f"corpus: {len(corpus):,} rows; model {version} ({NAMED_MODEL}: {named}), "
        f"challenger {challenger}",
        flush=True,
    )
    bodies = {
        (texts, top_k, protocol, model): bench_data.write_bodies(
            corpus, work_dir, texts=texts, top_k=top_k, protocol=protocol, model=model
        )
        for texts, top_k, protocol, model in {
            (1, None, "native", None),
            *(s.bodies for s in selected),
        }
    }
    databases = start_databases(
        env,
        postgres=any(s.name.startswith(("web", "data")) for s in selected),
        corpus=corpus if any(s.name.startswith("data") for s in selected) else None,
    )
    try:
        announce(env, version, challenger)
        announce(env, named, model=NAMED_MODEL)
        runs: list[Run] = []
        print(report.markdown_table(report.RUN_HEADER, []), flush=True)
        for round_no in range(1, args.rounds + 1):
            for scenario in in_round_order(selected, round_no):
                result = measure(scenario, env, bodies[scenario.bodies], args)
                runs.append(Run(scenario, round_no, result))
                print(report.markdown_row(report.every_run_row(runs[-1])), flush=True)
        hotswap = None
        single = bodies[1, None, "native", None]
        if "hotswap" in args.scenario:
            hotswap = run_hotswap(env, corpus, single, args.hotswap_seconds)
        cold = None
        if "cold_start" in args.scenario:
            cold = run_cold_starts(env, trained, json.loads(single.lines()[0])["text"])
    finally:
        stop_children(databases)
    return Results(runs, hotswap, cold)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = datetime.now(UTC), Path("/proc/loadavg").read_text().split()[0]
    work_dir = make_scratch_dir("textclf-bench-")
    try:
        results = run(args, work_dir)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:  # wrk, corpus, servers
        print(f"error: {exc}\n(logs in {work_dir / 'logs'})", file=sys.stderr, flush=True)
        args.keep = True
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    text = section(results, args, started, load)
    print("\n" + text)
    args.results_json.parent.mkdir(parents=True, exist_ok=True)
    runs = [
        {"scenario": run.scenario.name, "round": run.round, **asdict(run.result)}
        for run in results.runs
    ]
    hotswap = results.hotswap.as_dict() if results.hotswap else None
    cold = results.cold.as_dict() if results.cold else None
    found = {"runs": runs, "hotswap": hotswap, "cold_start": cold}
    args.results_json.write_text(json.dumps(found, indent=2))
    if set(args.scenario) == {*BY_NAME, *EXTRA_PARTS}:
        report.write_section(args.docs, SECTION_TITLE, text)
        print(f"results written to {args.docs} and {args.results_json}")
    else:
        print(f"partial run: {args.docs} left as it is; raw results in {args.results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
