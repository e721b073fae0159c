"""What the import's COPY costs PostgreSQL, variant by variant, and what Python's side costs.

    python -m loadtests.import_cost [--rows 1000000] [--import-rows 1000000] [--rounds 2]

Starts its own embedded PostgreSQL (temporary directory), migrates, seeds --rows rows as the data
bench does (dated in the year before now), then COPYs the same --import-rows rows, formatted
beforehand, once per variant and round (order reversed every other round), each in a
transaction rolled back and followed by VACUUM: in binary (as the import writes them) or in the
text format of before, with every index or with some dropped inside the transaction. For each:
wall time, the CPU time of the backend that ran the COPY (utime + stime from /proc, which other
work on the machine moves far less than wall time) and the WAL it wrote. Then Python's side of
an NDJSON import of those rows (read, parse, check, format; no database), in CPU seconds.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from core.harness.embedded import new_password, postgres_url, start_postgres
from core.harness.scratch import free_port
from core.process import stop_children
from loadtests.bench_data import load_corpus
from loadtests.corpus import sample_rows
from loadtests.data_bench import import_body, load_table, prepare_database

MODEL_INDEXES = (
    "data_model_id_idx",
    "data_model_label_id_idx",
    "data_model_created_id_idx",
    "data_model_updated_id_idx",
)
# variant -> (binary?, indexes dropped inside the transaction)
VARIANTS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "binary, every index": (True, ()),
    "text, every index": (False, ()),
    "binary, no (model, id)": (True, ("data_model_id_idx",)),
    "binary, no (model, label, id)": (True, ("data_model_label_id_idx",)),
    "binary, no (model, created_at, id)": (True, ("data_model_created_id_idx",)),
    "binary, no (model, updated_at, id)": (True, ("data_model_updated_id_idx",)),
    "binary, no backlog index": (True, ("data_search_backlog_idx",)),
    "binary, primary key only": (True, (*MODEL_INDEXES, "data_search_backlog_idx")),
}


def text_block(rows: list[tuple[str, str]], *, model: str, stamp: datetime) -> bytes:
    """The rows in COPY's text format, as the import wrote them before binary COPY."""
    end = f"\t{model}\t{stamp.isoformat()}\t{stamp.isoformat()}\tf\n"
    joined = "".join([f"{text}\x00{label}\x00\x00" for text, label in rows])
    escaped = (
        joined.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return escaped.replace("\x00\x00", end).replace("\x00", "\t").encode()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def copy_once(dsn: str, blocks: list[bytes], *, binary: bool, drop: tuple[str, ...]) -> tuple:
    """(wall s, backend CPU s, WAL MB) of one COPY of blocks, rolled back, then VACUUM."""
    from web.data import copy_binary

    with psycopg.connect(dsn) as conn:
        for index in drop:
            conn.execute(f"DROP INDEX {index}")
        start_lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
        pid, began = conn.info.backend_pid, time.perf_counter()
        cpu = process_cpu(pid)
        form = " (FORMAT BINARY)" if binary else ""
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY data {copy_binary.COLUMNS} FROM STDIN{form}") as copy,
        ):
            for block in blocks:
                copy.write(block)
        wall, cpu = time.perf_counter() - began, process_cpu(pid) - cpu
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [start_lsn]
        ).fetchone()[0]  # type: ignore[index]
        conn.rollback()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM data")
    return wall, cpu, float(wal) / 1e6


def python_side_cpu(rows: list[tuple[str, str]]) -> float:
    """CPU seconds of reading, parsing, checking and formatting the rows' NDJSON body."""
    from web.data import copy_binary, import_formats

    body = io.BytesIO(import_body(rows, "ndjson"))
    began = time.process_time()
    formatter = copy_binary.BinaryRows(model="default", stamp=datetime.now(UTC))
    lines = import_formats.bounded_line_lists(body.read, max_bytes=1 << 40)
    for item in import_formats.parse_ndjson(lines):
        assert isinstance(item, import_formats.Block), item
        formatter.block(item.texts, item.labels)
    return time.process_time() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("ALGORITHM_TOKEN", "import-cost-calls-no-algorithm")
    import django

    django.setup()
    from web.data import copy_binary

    corpus = load_corpus()
    rows = list(sample_rows(corpus, args.import_rows, seed=2))
    stamp = datetime.now(UTC)
    formatter = copy_binary.BinaryRows(model="default", stamp=stamp)
    blocks = {
        True: [copy_binary.SIGNATURE]
        + [
            formatter.block(*map(list, zip(*rows[i : i + 2000], strict=True)))
            for i in range(0, len(rows), 2000)
        ]
        + [copy_binary.TRAILER],
        False: [
            text_block(rows[i : i + 2000], model="default", stamp=stamp)
            for i in range(0, len(rows), 2000)
        ],
    }
    names = args.variant or list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="import-cost-") as work:
        os.chmod(work, 0o755)  # PostgreSQL runs as a user of its own and must reach its data
        port, password = free_port(), new_password()
        server = start_postgres(
            Path(work) / "pg",
            port=port,
            database="bench",
            password=password,
            log_path=Path(work) / "pg.log",
        )
        try:
            dsn = postgres_url(port=port, database="bench", password=password)
            prepare_database(dsn)
            load_table(dsn, sample_rows(corpus, args.rows, seed=1), total=args.rows)
            for round_number in range(args.rounds):
                for name in names if round_number % 2 == 0 else names[::-1]:
                    binary, drop = VARIANTS[name]
                    wall, cpu, wal = copy_once(dsn, blocks[binary], binary=binary, drop=drop)
                    load = Path("/proc/loadavg").read_text().split()[0]
                    print(
                        f"{name:38s} wall {wall:6.2f} s  backend CPU {cpu:6.2f} s  "
                        f"WAL {wal:5.0f} MB  load {load}",
                        flush=True,
                    )
        finally:
            stop_children([server])
    for _ in range(args.rounds):
        print(f"Python's side (NDJSON): {python_side_cpu(rows):.2f} s of CPU", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
