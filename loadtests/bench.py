"""`make bench`: the prediction servers side by side, interleaved, on this machine.

Trains the service's TF-IDF + linear model (algorithm.ml) on 6 400 Debian package
descriptions, publishes it into a temporary model root, then for each round starts every
scenario's server alone on a free 127.0.0.1 port, warms it up, loads it with wrk (-t1 -c64)
and stops it by pid. Ratios are taken per round and their median reported against the spec's
targets; a hot-swap run closes the
bench. Missed targets are reported, not fatal: the exit code is non-zero only when the harness
itself fails (a server that does not start, wrk missing, no corpus).

    python -m loadtests.bench [--rounds 3] [--seconds 10] [--scenario algorithm --scenario hello]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loadtests import bench_report as report
from loadtests.bench_data import (
    BATCH_TEXTS,
    TRAIN_ROWS,
    BenchData,
    load_average,
    load_corpus,
    machine_description,
    publish,
    train,
    write_bodies,
)
from loadtests.bench_servers import (
    BenchEnv,
    StartServer,
    start_algorithm,
    start_baseline,
    start_hello,
    start_web,
    start_web_ceiling,
)
from loadtests.corpus import CorpusUnavailableError
from loadtests.hotswap import HotSwapResult, measure_hot_swap
from loadtests.wrk import WrkError, run_wrk, wrk_binary
from stack.embedded import free_port, start_postgres, start_redis
from stack.process import Child, stop_children


@dataclass(frozen=True)
class Scenario:
    start: StartServer
    batch: bool = False


# One round runs these in this order; each ratio pairs runs of the same round.
SCENARIOS = {
    "hello": Scenario(start_hello),
    "algorithm": Scenario(start_algorithm),
    "baseline": Scenario(start_baseline),
    "batch": Scenario(start_algorithm, batch=True),
    "web_ceiling": Scenario(start_web_ceiling),
    "web": Scenario(start_web),
}
ALL_SCENARIOS = [*SCENARIOS, "hotswap"]


def measure(
    name: str, env: BenchEnv, data: BenchData, args: argparse.Namespace, round_no: int
) -> report.Run:
    """Start the scenario's server(s), warm up, measure once with wrk, stop by pid."""
    scenario = SCENARIOS[name]
    bodies = data.batch_bodies if scenario.batch else data.single_bodies
    first_body = bodies.read_bytes().split(b"\n", 1)[0]
    connections = args.batch_connections if scenario.batch else args.connections
    timeout = 30.0 if scenario.batch else 5.0
    server = scenario.start(env, first_body)
    try:
        run_wrk(
            server.url,
            bodies,
            connections=connections,
            seconds=args.warmup,
            timeout_seconds=timeout,
        )
        result = run_wrk(
            server.url,
            bodies,
            connections=connections,
            seconds=args.seconds,
            timeout_seconds=timeout,
        )
    finally:
        server.stop()
    return report.Run(name, round_no, result, BATCH_TEXTS if scenario.batch else 1)


def run_hotswap(
    env: BenchEnv, data: BenchData, corpus: list[tuple[str, str]], args: argparse.Namespace
) -> HotSwapResult:
    """Publish a model trained on another sample while 64 connections predict."""
    model, metrics = train(corpus, seed=2)
    server = start_algorithm(env, data.single_lines[0])
    try:
        return asyncio.run(
            measure_hot_swap(
                server.url,
                publish=lambda: publish(env.model_root, model, metrics, seed=2),
                bodies=data.single_lines,
                connections=args.connections,
                seconds=args.hotswap_seconds,
                publish_after=args.hotswap_seconds / 3,
            )
        )
    finally:
        server.stop()


def migrate(env: BenchEnv) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
        env={**env.service_env(), "DJANGO_SETTINGS_MODULE": "web.settings"},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrations failed:\n{done.stderr[-2000:]}")


def print_run(run: report.Run, rounds: int) -> None:
    r = run.result
    texts = f"  ({run.texts_per_second:,.0f} texts/s)" if run.texts_per_request > 1 else ""
    print(
        f"round {run.round}/{rounds}  {report.SCENARIO_TITLES[run.scenario]:<55} "
        f"{run.rps:8,.0f} req/s{texts}  p50 {r.p50_us / 1000:6.1f} ms  "
        f"p99 {r.p99_us / 1000:6.1f} ms  errors {r.errors}",
        flush=True,
    )


def build_section(
    runs: Sequence[report.Run],
    hotswap: HotSwapResult | None,
    args: argparse.Namespace,
    data: BenchData,
    started: datetime,
    elapsed: float,
    load_at_start: float,
) -> str:
    found = report.checks(runs, hotswap)
    parts = [
        report.SECTION_TITLE,
        "",
        f"Written by `make bench` (`python -m loadtests.bench --rounds {args.rounds} --seconds "
        f"{args.seconds:g}`) on {started:%Y-%m-%d %H:%M} UTC; the whole run took "
        f"{elapsed / 60:.1f} min.",
        "",
        f"- Machine: {machine_description()}. Other processes may share it; only ratios taken "
        "within one round are compared. 1-minute load average just before the run: "
        f"{load_at_start:.1f} (anything well above 0 means other work competed for the cores).",
        f"- Model: TF-IDF + SGD (modified Huber) from `algorithm.ml`, trained on {TRAIN_ROWS:,} "
        "Debian package descriptions "
        f"(`loadtests/corpus.py`, {data.labels} section labels), published with "
        "`publish_model_version` into a temporary model root.",
        f"- Load: `wrk -t1 -c{args.connections} -d{args.seconds:g}s` from this machine to "
        "127.0.0.1, POST of one short text, cycling through 2 000 descriptions "
        f"(`loadtests/wrk_post.lua`); batch: `-c{args.batch_connections}` (enough connections "
        f"that both workers get some), {BATCH_TEXTS:,} texts per body. Any answer outside 2xx, "
        "socket error or timeout counts as an error.",
        "- Why wrk: on 2 cores the load generator takes CPU from the servers it measures; wrk "
        "(C, one thread) costs a small part of a core where a Python generator (locust, an "
        "asyncio client) needs most of one and would cap what it can show.",
        f"- Procedure: rounds: {args.rounds}; in each, every scenario's server is started alone "
        f"on a free port, warmed up for {args.warmup:g} s, measured for {args.seconds:g} s and "
        "stopped, in the order below. Ratios are per round, then the median over rounds.",
        "",
        "### Targets",
        "",
        report.markdown_table(report.CHECK_HEADER, report.check_rows(found)),
        "",
        "### Medians",
        "",
        report.markdown_table(report.MEDIAN_HEADER, report.median_rows(runs)),
        "",
        "### Every run",
        "",
        report.markdown_table(report.RUN_HEADER, report.runs_rows(runs)),
        "",
    ]
    if hotswap is not None:
        parts += ["### Hot swap under load", "", *report.hotswap_lines(hotswap), ""]
    return "\n".join(parts)


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
    parser.add_argument(
        "--scenario",
        action="append",
        choices=ALL_SCENARIOS,
        help="run only these (repeatable); default: all",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="markdown file whose section gets the results (full runs only)",
    )
    parser.add_argument("--results-json", type=Path, default=Path("var/bench-results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    selected = args.scenario or ALL_SCENARIOS
    started, clock, load_at_start = datetime.now(UTC), time.monotonic(), load_average()
    work_dir = Path(tempfile.mkdtemp(prefix="textclf-bench-"))
    infra: list[Child] = []
    try:
        wrk_binary()
        corpus = load_corpus()
        print(f"corpus: {len(corpus):,} rows; training on {TRAIN_ROWS:,}", flush=True)
        model, metrics = train(corpus, seed=1)
        env = BenchEnv(
            work_dir=work_dir,
            model_root=work_dir / "models",
            redis_url="",
            secret_key=secrets.token_urlsafe(50),
        )
        print(
            f"model {publish(env.model_root, model, metrics, seed=1)}: "
            f"holdout accuracy {metrics.get('accuracy')}",
            flush=True,
        )
        data = write_bodies(work_dir, corpus)
        redis_port = free_port()
        infra.append(
            start_redis(work_dir / "redis", port=redis_port, log_path=env.log_path("redis"))
        )
        env.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        if "web" in selected:
            pg_port = free_port()
            infra.append(
                start_postgres(
                    work_dir / "postgres",
                    port=pg_port,
                    database="bench",
                    log_path=env.log_path("postgres"),
                )
            )
            env.database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/bench"
            migrate(env)
        runs: list[report.Run] = []
        for round_no in range(1, args.rounds + 1):
            for name in SCENARIOS:
                if name in selected:
                    runs.append(measure(name, env, data, args, round_no))
                    print_run(runs[-1], args.rounds)
        hotswap = run_hotswap(env, data, corpus, args) if "hotswap" in selected else None
    except (WrkError, CorpusUnavailableError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"error: {exc}\n(logs in {work_dir / 'logs'})", file=sys.stderr, flush=True)
        args.keep = True
        return 1
    finally:
        stop_children(infra)
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    elapsed = time.monotonic() - clock
    found = report.checks(runs, hotswap)
    print()
    print(report.text_table(report.MEDIAN_HEADER, report.median_rows(runs)))
    print()
    print(report.text_table(report.CHECK_HEADER, report.check_rows(found)))
    if hotswap is not None:
        print("\nhot swap: " + "\n".join(report.hotswap_lines(hotswap)))
    args.results_json.parent.mkdir(parents=True, exist_ok=True)
    args.results_json.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": machine_description(),
                "runs": [
                    {
                        "scenario": r.scenario,
                        "round": r.round,
                        "rps": r.rps,
                        "texts_per_second": r.texts_per_second,
                        **r.result.as_dict(),
                    }
                    for r in runs
                ],
                "hotswap": hotswap.as_dict() if hotswap else None,
            },
            indent=2,
        )
    )
    if set(selected) == set(ALL_SCENARIOS):
        report.write_section(
            args.docs,
            build_section(runs, hotswap, args, data, started, elapsed, load_at_start),
        )
        print(f"\nresults written to {args.docs} and {args.results_json}")
    else:
        print(f"\npartial run: {args.docs} left as it is; raw results in {args.results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
