"""Two versions of the code side by side: the predict servers of another commit and of this one.

For a change that must not move performance (a restructuring), `make bench` alone compares each
server with references of its own run, not with the code before the change. This runs the
algorithm service's `POST /predict` and web's `POST /api/predict/` from a `git worktree` of
`--before` and from this checkout, on the same model, Redis and PostgreSQL, interleaved round by
round (order reversed on even rounds), and reports after/before per round and their median.

    python -m loadtests.compare_refs --before REF [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from core.harness.scratch import make_scratch_dir
from core.process import stop_children
from loadtests import bench_data
from loadtests import bench_report as report
from loadtests.bench import announce, in_round_order, start_databases
from loadtests.bench_report import Results, Run
from loadtests.bench_servers import BY_NAME, BenchEnv, Scenario, start_server
from loadtests.wrk import run_wrk, wrk_binary

COMPARED = ("algorithm", "web")


def scenarios(before: Path, label: str) -> dict[str, Scenario]:
    """This checkout's servers and the same servers run from `before`, named `<name>@<label>`."""
    found: dict[str, Scenario] = {}
    for name in COMPARED:
        now = BY_NAME[name]
        then = dataclasses.replace(
            now,
            name=f"{name}@{label}",
            title=f"{now.title} @ {label}",
            upstream=f"{now.upstream}@{label}" if now.upstream else None,
            checkout=before,
        )
        found[now.name] = now
        found[then.name] = then
    return found


def add_worktree(ref: str, where: Path) -> str:
    """A detached worktree of `ref` at `where`; returns the commit's short id."""
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    subprocess.run([*git, "worktree", "add", "--detach", str(where), ref], check=True)
    found = subprocess.run(
        [*git, "rev-parse", "--short", ref], check=True, capture_output=True, text=True
    )
    return found.stdout.strip()


def measure(
    scenario: Scenario,
    env: BenchEnv,
    body_path: Path,
    first_body: bytes,
    table: dict[str, Scenario],
    args: argparse.Namespace,
) -> Run:
    server = start_server(scenario, env, first_body, table)
    try:
        for seconds in (args.warmup, args.seconds):  # the first run only warms up
            result = run_wrk(
                server.url,
                body_path,
                seconds=seconds,
                connections=args.connections,
                timeout_seconds=5.0,
                headers=env.headers(scenario),
            )
    finally:
        server.stop()
    return Run(scenario, 0, result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    wrk_binary()
    work_dir = make_scratch_dir("textclf-compare-")
    checkout = work_dir / "before"
    label = add_worktree(args.before, checkout)
    try:
        return compare(args, work_dir, checkout, label)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], check=False)
        shutil.rmtree(work_dir, ignore_errors=True)


def compare(args: argparse.Namespace, work_dir: Path, checkout: Path, label: str) -> int:
    table = scenarios(checkout, label)
    corpus = bench_data.load_corpus()
    env = BenchEnv(
        work_dir, secret_key=secrets.token_urlsafe(50), service_token=secrets.token_urlsafe(32)
    )
    version = bench_data.publish(env.model_root, bench_data.train(corpus, seed=1), seed=1)
    bodies = bench_data.write_bodies(corpus, work_dir, texts=1, top_k=None)
    databases = start_databases(env, postgres=True)
    order = [table[name] for name in (*COMPARED, *(f"{n}@{label}" for n in COMPARED))]
    runs: list[Run] = []
    try:
        announce(env, version)
        for round_no in range(1, args.rounds + 1):
            for scenario in in_round_order(order, round_no):
                run = measure(scenario, env, bodies.path, bodies.lines()[0], table, args)
                runs.append(dataclasses.replace(run, round=round_no))
                print(report.markdown_row(report.every_run_row(runs[-1])), flush=True)
    finally:
        stop_children(databases)
    results = Results(runs)
    rows = []
    for name in COMPARED:
        ratio = results.ratio(name, f"{name}@{label}")
        per_round = [
            run.rps / before.rps
            for run in results.of(name)
            for before in results.of(f"{name}@{label}")
            if before.round == run.round
        ]
        rows.append(
            [
                f"{name}: this checkout / {label}",
                f"{ratio:.2f}" if ratio else "-",
                ", ".join(f"{value:.2f}" for value in per_round),
            ]
        )
    print()
    print(report.markdown_table(["requests/s", "median ratio", "per round"], rows))
    print()
    medians = [report.run_row(s.title, results.of(s.name)) for s in order if results.of(s.name)]
    print(report.markdown_table(report.RUN_HEADER, medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
