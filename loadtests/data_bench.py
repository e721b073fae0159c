"""Data at scale: list variants, import and export against a table of --rows rows.

    python -m loadtests.data_bench --rows 1000000
    python -m loadtests.data_bench --rows 1000000 --only import   # imports only, no report

Starts its own embedded PostgreSQL (temporary directory, free port), migrates, loads --rows
Debian descriptions by COPY (`sample_rows`/`vary_text`, timestamps spread over a year), then
serves web with one Hypercorn worker and measures, over keep-alive HTTP from this process:
each list variant (median and p99 of --requests sequential requests), the import of
--import-rows rows as NDJSON and as CSV (rows/s, the web worker's peak RSS, and how long web's
drain takes to put them into the trigram index), the searches while that drain runs, after it,
and while a backlog of --import-rows rows waits (the bench holds the drain's lock, then drains
alone), and the export of the whole table (rows/s). The table goes into docs/benchmarks.md
between its markers.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from core.harness.embedded import new_password, postgres_url, start_postgres
from core.harness.scratch import free_port
from core.process import Child, spawn, stop_children
from loadtests.bench_data import load_corpus
from loadtests.bench_report import machine_description
from loadtests.corpus import sample_rows
from loadtests.web_commands import prepare_web_database, run_web_command

REPO_ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- data-bench:begin -->", "<!-- data-bench:end -->"
TARGET_MS = 50
DRAIN_LOCK = 0x6261636B6C6F67  # web/data/search_backlog.py


def cursor(ordering: str, key: list[object]) -> str:
    """A cursor as web/data/pagination.py writes it: the position after `key` in `ordering`."""
    raw = json.dumps({"o": ordering, "k": key, "b": False}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def load_table(dsn: str, rows: Iterator[tuple[str, str]], *, total: int) -> float:
    """COPY rows into `data` with created/updated times spread over the year before now; return
    seconds. In the past, as a real table's rows are: an import's rows, stamped now, then go to
    the right edge of the time indexes, where seeded rows dated up to a fixed 2027-01-01 had
    put them in the middle (~3 s more of PostgreSQL's CPU per million rows imported)."""
    start = datetime.now(UTC) - timedelta(days=365, hours=1)
    step = timedelta(days=365) / max(total, 1)
    rng = random.Random(7)
    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        with (
            conn.cursor() as cur,
            cur.copy("COPY data (text, label, created_at, updated_at) FROM STDIN") as copy,
        ):
            for index, (text, label) in enumerate(rows):
                created = start + step * index
                copy.write_row((text, label, created, created + timedelta(hours=rng.random())))
        conn.execute("VACUUM ANALYZE data")
    return time.perf_counter() - began


def list_variants(total: int, common_label: str, rare_label: str, rare_word: str) -> list[tuple]:
    """(name, query) of every list variant measured."""
    deep = int(total * 0.95)
    variants = [
        ("first page", ""),
        (f"deep cursor page (id > {deep})", f"cursor={cursor('id', [deep])}"),
        (
            "deep cursor page, ordering=-label",
            f"ordering=-label&cursor={cursor('-label', [common_label, deep])}",
        ),
        (f"label={common_label} (common)", f"label={common_label}"),
        (f"label={rare_label} (rare)", f"label={rare_label}"),
        ("search=kernel (common word)", "search=kernel"),
        (f"search={rare_word} (rare word)", f"search={rare_word}"),
        ("search=x1e240 (one row)", "search=x1e240"),
    ]
    for field in ("id", "label", "created_at", "updated_at"):
        for sign in ("", "-"):
            variants.append((f"ordering={sign}{field}", f"ordering={sign}{field}"))
    variants += [
        (
            f"label={common_label} + ordering=-created_at",
            f"label={common_label}&ordering=-created_at",
        ),
        (f"label={rare_label} + ordering=-updated_at", f"label={rare_label}&ordering=-updated_at"),
        (f"search=kernel + label={common_label}", f"search=kernel&label={common_label}"),
        ("search=kernel + ordering=-created_at", "search=kernel&ordering=-created_at"),
        (f"search={rare_word} + ordering=label", f"search={rare_word}&ordering=label"),
        (
            f"label={common_label} + search=kernel + ordering=-id",
            f"label={common_label}&search=kernel&ordering=-id",
        ),
    ]
    return variants


def time_requests(client: httpx.Client, url: str, count: int) -> tuple[float, float]:
    """Median and p99 in milliseconds of `count` sequential GETs (after two warm-up calls)."""
    for _ in range(2):
        client.get(url).raise_for_status()
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        client.get(url).raise_for_status()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def load_average() -> float:
    """The 1-minute load average: how busy the machine was apart from the bench."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def import_body(rows: list[tuple[str, str]], file_format: str) -> bytes:
    if file_format == "ndjson":
        return b"".join(
            json.dumps({"text": t, "label": label}, ensure_ascii=False).encode() + b"\n"
            for t, label in rows
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return out.getvalue().encode()


def measure_import(client: httpx.Client, web_pid: int, body: bytes, file_format: str) -> dict:
    content_type = "application/x-ndjson" if file_format == "ndjson" else "text/csv"
    rss_before = peak_rss_mib(web_pid)
    began = time.perf_counter()
    response = client.post(
        "/api/data/import", content=body, timeout=1800, headers={"Content-Type": content_type}
    )
    seconds = time.perf_counter() - began
    response.raise_for_status()
    created = response.json()["created"]
    return {
        "rows": created,
        "seconds": seconds,
        "mb": len(body) / 1e6,
        "peak_rss_before": rss_before,
        "peak_rss_after": peak_rss_mib(web_pid),
    }


def measure_export(client: httpx.Client, file_format: str) -> dict:
    began = time.perf_counter()
    lines = size = 0
    with client.stream("GET", f"/api/data/export?format={file_format}", timeout=1800) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.perf_counter() - began
    return {"lines": lines, "seconds": seconds, "mb": size / 1e6}


def time_searches(
    client: httpx.Client, searches: list[tuple[str, str]], results: dict, *, count: int, when: str
) -> None:
    """Median and p99 of each search `count` times, recorded as `<search>, <when>`."""
    for name, query in searches:
        median, p99 = time_requests(client, f"/api/data/?{query}", count)
        results["lists"].append((f"{name}, {when}", median, p99))
        print(f"  {name}, {when}: median {median:.1f} ms", flush=True)


def wait_for_empty_backlog(conn: psycopg.Connection) -> float:
    """Poll until no row waits in the search backlog; return when (perf_counter)."""
    waiting = "SELECT EXISTS (SELECT 1 FROM data WHERE NOT search_indexed)"
    while conn.execute(waiting).fetchone() != (False,):
        time.sleep(0.2)
    return time.perf_counter()


def rare_word_of(corpus: list[tuple[str, str]]) -> str:
    """A real word of 6+ letters found in very few descriptions."""
    counts: dict[str, int] = {}
    for text, _ in corpus:
        for word in set(text.lower().split()):
            if word.isalpha() and len(word) >= 8:
                counts[word] = counts.get(word, 0) + 1
    return sorted(w for w, c in counts.items() if c == 2)[0]


BENCH_SECRET_KEY = "bench-" + "k" * 50
API_TOKEN = "tcf_data_bench_" + "t" * 32  # an editor token the bench creates on its database


def django_env(dsn_url: str) -> dict[str, str]:
    """web's environment: the bench's database, no rate limits (one client measures latency)."""
    limits = {
        f"RATE_LIMIT_{scope}_PER_MINUTE": "0" for scope in ("PREDICT", "READS", "WRITES", "TRAIN")
    }
    return {
        **os.environ,
        **limits,
        "DATABASE_URL": dsn_url,
        "DJANGO_SECRET_KEY": BENCH_SECRET_KEY,
        "ALGORITHM_TOKEN": "data-bench-calls-no-algorithm",
    }


def start_web(dsn_url: str, log: Path) -> tuple[Child, str]:
    port = free_port()
    env = {**django_env(dsn_url), "WEB_PORT": str(port), "WEB_WORKERS": "1"}
    child = spawn("web", [sys.executable, "-m", "web"], env=env, cwd=REPO_ROOT, log_path=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return child, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"web did not start:\n{log.read_text()}")


def prepare_database(dsn_url: str) -> None:
    """Migrate, and create the editor token the bench presents."""
    prepare_web_database(django_env(dsn_url), token=API_TOKEN, name="data-bench", role="editor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=50, help="per list variant")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--only", choices=["import"], help="measure only the imports; no report")
    parser.add_argument(
        "--lists-after-import",
        type=float,
        metavar="SECONDS",
        help="one NDJSON import first, a one-row search every 2 s until the backlog is drained "
        "(the window after an import), then every list SECONDS after the import answered",
    )
    args = parser.parse_args(argv)
    corpus = load_corpus()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="data-bench-") as work:
        os.chmod(work, 0o755)  # PostgreSQL runs as a user of its own and must reach its data
        port, password = free_port(), new_password()
        children.append(
            start_postgres(
                Path(work) / "pg",
                port=port,
                database="bench",
                password=password,
                log_path=Path(work) / "pg.log",
            )
        )
        url = postgres_url(port=port, database="bench", password=password)
        try:
            prepare_database(url)
            load_seconds = load_table(url, sample_rows(corpus, args.rows, seed=1), total=args.rows)
            print(f"loaded {args.rows} rows in {load_seconds:.0f} s", flush=True)
            web, web_url = start_web(url, Path(work) / "web.log")
            children.append(web)
            web_pid = int(Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text().split()[0])
            try:
                results = run_measurements(args, corpus, web_url, web_pid, dsn=url)
            except httpx.HTTPError:
                print((Path(work) / "web.log").read_text()[-5000:], file=sys.stderr)
                raise
        finally:
            stop_children(children)
    if not args.only:
        write_report(args, results, load_seconds)
    return 0


def run_measurements(
    args: argparse.Namespace, corpus: list, web_url: str, web_pid: int, *, dsn: str
) -> dict:
    labels: dict[str, int] = {}
    for _, label in corpus:
        labels[label] = labels.get(label, 0) + 1
    common_label = max(labels, key=lambda name: labels[name])
    rare_label = min(labels, key=lambda name: labels[name])
    results: dict = {"lists": [], "imports": {}, "exports": {}, "load_before": load_average()}
    variants = list_variants(args.rows, common_label, rare_label, rare_word_of(corpus))
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=web_url, timeout=60, headers=headers) as client:
        if args.lists_after_import is not None:
            extra = list(sample_rows(corpus, args.import_rows, seed=2))
            with psycopg.connect(dsn, autocommit=True) as conn:
                after_import(args, client, conn, web_pid, extra, variants, results, rare_label)
            results["load_after"] = load_average()
            return results
        floor = time_requests(client, "/health/live", args.requests)
        results["lists"].append(("GET /health/live (no database: the stack's floor)", *floor))
        for name, query in [] if args.only else variants:
            median, p99 = time_requests(client, f"/api/data/?{query}", args.requests)
            results["lists"].append((f"{name}", median, p99))
            print(f"{name:55s} median {median:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
        extra = list(sample_rows(corpus, args.import_rows, seed=2))
        searches = [(n, q) for n, q in variants if n.startswith("search=") and "+" not in n]
        with psycopg.connect(dsn, autocommit=True) as conn:
            for file_format in ("ndjson", "csv"):
                run = measure_import(client, web_pid, import_body(extra, file_format), file_format)
                answered = time.perf_counter()
                if file_format == "ndjson":  # what searches cost while web drains the backlog
                    when = f"during the drain after the {file_format} import"
                    time_searches(client, searches, results, count=5, when=when)
                run["drain_seconds"] = wait_for_empty_backlog(conn) - answered
                print(file_format, "import", run, flush=True)
                results["imports"][file_format] = run
                when = f"after the {file_format} import's drain"
                time_searches(client, searches, results, count=10, when=when)
            # A backlog that waits: while the bench holds the drain lock, web's drain gives way.
            conn.execute("SELECT pg_advisory_lock(%s)", [DRAIN_LOCK])
            run = measure_import(client, web_pid, import_body(extra, "ndjson"), "ndjson")
            when = f"{args.import_rows} imported rows waiting in the backlog"
            time_searches(client, searches, results, count=10, when=when)
            conn.execute("SELECT pg_advisory_unlock(%s)", [DRAIN_LOCK])
            drained = run_web_command(
                django_env(dsn), "drain_search_backlog"
            )  # alone: no request meanwhile
            run["drain_seconds"] = float(drained.split(" in ")[1].split()[0])
            print("import, drain held back, then drained alone", run, flush=True)
            results["imports"]["ndjson, drained alone afterwards"] = run
        for file_format in () if args.only else ("ndjson", "csv"):
            results["exports"][file_format] = measure_export(client, file_format)
            print(file_format, "export", results["exports"][file_format], flush=True)
    results["load_after"] = load_average()
    return results


def after_import(
    args: argparse.Namespace,
    client: httpx.Client,
    conn: psycopg.Connection,
    web_pid: int,
    rows: list[tuple[str, str]],
    variants: list[tuple],
    results: dict,
    rare_label: str,
) -> None:
    """One NDJSON import (body made first), the window while its rows wait, then every list.

    In the window, every 2 s: a search for a word on one row, and the rarest label's newest rows
    (`-id`: the imported rows of that label come first, read apart from the indexed ones).
    """
    run = measure_import(client, web_pid, import_body(rows, "ndjson"), "ndjson")
    answered = time.perf_counter()
    print(f"import {run['rows']} rows in {run['seconds']:.1f} s", flush=True)
    probes = {"search": "search=x1e240", "label": f"label={rare_label}&ordering=-id"}
    window: dict[str, list] = {name: [] for name in probes}  # (s after the answer, ms, status)
    waiting = "SELECT EXISTS (SELECT 1 FROM data WHERE NOT search_indexed)"
    while conn.execute(waiting).fetchone() == (True,):
        for name, query in probes.items():
            began = time.perf_counter()
            status = client.get(f"/api/data/?{query}").status_code  # 503: statement timeout
            window[name].append((began - answered, (time.perf_counter() - began) * 1000, status))
            at, ms, _ = window[name][-1]
            print(f"  t+{at:.0f} s: {query} {ms:.0f} ms {status}", flush=True)
        time.sleep(2)
    run["drain_seconds"] = time.perf_counter() - answered
    results["imports"]["ndjson"] = run
    results["window"] = window
    print(f"drained {run['drain_seconds']:.1f} s after the answer", flush=True)
    for name, query in probes.items():
        slow = [at for at, ms, status in window[name] if ms >= TARGET_MS or status != 200]
        until = f"until t+{max(slow):.0f} s" if slow else "never"
        print(f"{query} at or over {TARGET_MS} ms: {until}", flush=True)
    time.sleep(max(0.0, args.lists_after_import - (time.perf_counter() - answered)))
    floor = time_requests(client, "/health/live", args.requests)
    results["lists"].append(("GET /health/live (no database: the stack's floor)", *floor))
    for name, query in variants:
        median, p99 = time_requests(client, f"/api/data/?{query}", args.requests)
        results["lists"].append((name, median, p99))
        print(f"{name:55s} median {median:7.1f} ms  p99 {p99:7.1f} ms", flush=True)


def write_report(args: argparse.Namespace, results: dict, load_seconds: float) -> None:
    lines = [
        BEGIN,
        "## Data at scale",
        "",
        f"`python -m loadtests.data_bench --rows {args.rows} --import-rows {args.import_rows} "
        f"--requests {args.requests}` on {machine_description()}; 1-minute load average "
        f"{results['load_before']:.1f} before the measurements, {results['load_after']:.1f} "
        f"after (other work shared the machine). {args.rows} rows loaded by COPY in "
        f"{load_seconds:.0f} s (all indexes in place), then VACUUM ANALYZE. Web: one Hypercorn "
        "worker; sequential keep-alive requests from one client, page size 50.",
        "",
        f"| list request | median ms | p99 ms | under {TARGET_MS} ms |",
        "|---|---|---|---|",
    ]
    for name, median, p99 in results["lists"]:
        lines.append(
            f"| `{name}` | {median:.1f} | {p99:.1f} | {'yes' if median < TARGET_MS else '**no**'} |"
        )
    lines += [
        "",
        "| transfer | rows | MB | seconds | rows/s | web peak RSS MiB (before → after) "
        "| backlog drained in s |",
        "|---|---|---|---|---|---|---|",
    ]
    for file_format, run in results["imports"].items():
        lines.append(
            f"| import {file_format} | {run['rows']} | {run['mb']:.0f} | {run['seconds']:.1f} | "
            f"{run['rows'] / run['seconds']:,.0f} | {run['peak_rss_before']:.0f} → "
            f"{run['peak_rss_after']:.0f} | {run['drain_seconds']:.1f} |"
        )
    for file_format, run in results["exports"].items():
        rows = run["lines"] - (1 if file_format == "csv" else 0)
        lines.append(
            f"| export {file_format} | {rows} | {run['mb']:.0f} | {run['seconds']:.1f} | "
            f"{rows / run['seconds']:,.0f} | | |"
        )
    lines.append(END)
    section = "\n".join(lines) + "\n"
    text = args.out.read_text() if args.out.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + section + "\n" + rest.partition(END)[2].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.out.write_text(text)
    print(f"wrote the Data at scale section of {args.out}")


if __name__ == "__main__":
    sys.exit(main())
