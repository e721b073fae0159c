"""Exports read by label, with no import waiting and with one waiting in the search backlog.

    python -m loadtests.export_by_label --rows 1000000 --import-rows 200000

An export by label says `AND search_indexed` (the label index holds indexed rows only) while no
import waits; while one does, it reads every row of the name and sorts them. This measures what
that costs: the seconds to the first byte and to the last of each export, twice each, first with
no backlog, then with --import-rows rows held in it (the bench holds the drain's lock). The table
is loaded as `loadtests.data_bench` loads it; web runs with one Hypercorn worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from core.harness.embedded import new_password, postgres_url, start_postgres
from core.harness.scratch import free_port
from core.process import Child, stop_children
from loadtests import data_bench
from loadtests.bench_data import load_corpus
from loadtests.corpus import sample_rows


def timed_export(client: httpx.Client, query: str) -> tuple[float, float, int]:
    """Seconds to the first byte, seconds to the last, and lines of one export."""
    began = time.perf_counter()
    first_byte = None
    lines = 0
    with client.stream("GET", f"/api/data/export?{query}", timeout=1800) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_bytes():
            if first_byte is None:
                first_byte = time.perf_counter() - began
            lines += chunk.count(b"\n")
    return first_byte or 0.0, time.perf_counter() - began, lines


def measure(client: httpx.Client, queries: list[str], *, when: str) -> None:
    for query in queries:
        for _ in range(2):
            first_byte, total, lines = timed_export(client, query)
            print(
                f"{when:28s} {query:40s} first byte {first_byte:6.3f} s  "
                f"all {total:5.2f} s  {lines} rows",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    corpus = load_corpus()
    labels = [label for _, label in corpus]
    common_label = max(set(labels), key=labels.count)
    queries = [
        f"label={common_label}",
        f"label={common_label}&ordering=-created_at",
        "ordering=label",
    ]
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="export-by-label-") as work:
        os.chmod(work, 0o755)  # PostgreSQL runs as a user of its own and must reach its data
        port, password = free_port(), new_password()
        log = Path(work) / "pg.log"
        children.append(
            start_postgres(
                Path(work) / "pg", port=port, database="bench", password=password, log_path=log
            )
        )
        dsn = postgres_url(port=port, database="bench", password=password)
        try:
            data_bench.prepare_database(dsn)
            seconds = data_bench.load_table(
                dsn, sample_rows(corpus, args.rows, seed=1), total=args.rows
            )
            print(f"loaded {args.rows} rows in {seconds:.0f} s", flush=True)
            web, web_url = data_bench.start_web(dsn, Path(work) / "web.log")
            children.append(web)
            headers = {"Authorization": f"Bearer {data_bench.API_TOKEN}"}
            with (
                httpx.Client(base_url=web_url, timeout=60, headers=headers) as client,
                psycopg.connect(dsn, autocommit=True) as conn,
            ):
                measure(client, queries, when="no import waiting")
                conn.execute("SELECT pg_advisory_lock(%s)", [data_bench.DRAIN_LOCK])
                extra = list(sample_rows(corpus, args.import_rows, seed=2))
                body = data_bench.import_body(extra, "ndjson")
                data_bench.measure_import(client, web.pid, body, "ndjson")
                conn.execute("ANALYZE data")  # as autovacuum would, after so many new rows
                measure(client, queries, when=f"{args.import_rows} rows waiting")
        finally:
            stop_children(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
