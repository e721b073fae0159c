"""What the import's COPY costs PostgreSQL, variant by variant, and what Python's side costs.

    python -m loadtests.import_cost [--rows 1000000] [--import-rows 1000000] [--rounds 2]

Starts its own embedded PostgreSQL (temporary directory), migrates, seeds --rows rows as the data
bench does (dated in the year before now), then COPYs the same --import-rows rows, formatted
beforehand, once per variant and round (order reversed every other round), each in a
transaction rolled back and followed by VACUUM: in binary (as the import writes them) or in the
text format of before, with every index or with some dropped inside the transaction, with the
blank checks as they are, as they were, written otherwise or dropped, with ids sent instead of
drawn from the sequence, or with the sequence caching values. For each:
wall time, the CPU time of the backend that ran the COPY (utime + stime from /proc, which other
work on the machine moves far less than wall time) and the WAL it wrote. Then Python's side of
an NDJSON import of those rows (read, parse, check, format; no database), in CPU seconds.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
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

# web.data.models.LABEL_INDEX (that module needs Django set up): indexed rows only, since 0010.
LABEL_INDEX = "data_model_label_indexed_idx"
MODEL_INDEXES = (
    "data_model_id_idx",
    LABEL_INDEX,
    "data_model_created_id_idx",
    "data_model_updated_id_idx",
)


def drop_indexes(*names: str) -> tuple[str, ...]:
    return tuple(f"DROP INDEX {name}" for name in names)


BLANK_CHECKS = ("data_text_not_blank", "data_label_not_blank")
NO_BLANK_CHECKS = tuple(f"ALTER TABLE data DROP CONSTRAINT {name}" for name in BLANK_CHECKS)
# The blank checks without a regular expression (which converts the whole text to wide
# characters first): NOT VALID, so adding them does not read the table's rows.
TRIMMED_BLANK_CHECKS = (
    *NO_BLANK_CHECKS,
    *(
        f"ALTER TABLE data ADD CONSTRAINT trimmed_{column} CHECK "
        f"(btrim({column}, E' \\t\\n\\r\\f\\v') <> '') NOT VALID"
        for column in ("text", "label")
    ),
)
# The blank checks as migration 0009 writes them: a first character that is printable ASCII
# and not a space settles it without the regular expression.
FAST_PATH_BLANK_CHECKS = (
    *NO_BLANK_CHECKS,
    *(
        f"ALTER TABLE data ADD CONSTRAINT fast_{column} CHECK "
        f"(ascii({column}) BETWEEN 33 AND 126 OR {column} ~ '\\S') NOT VALID"
        for column in ("text", "label")
    ),
)
# The blank checks before migration 0009: the regular expression alone.
REGEX_BLANK_CHECKS = (
    *NO_BLANK_CHECKS,
    *(
        f"ALTER TABLE data ADD CONSTRAINT regex_{column} CHECK ({column} ~ '\\S') NOT VALID"
        for column in ("text", "label")
    ),
)
# variant -> (format, statements run inside the transaction before the COPY)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "binary, every index": ("binary", ()),
    "text, every index": ("text", ()),
    "binary, no (model, id)": ("binary", drop_indexes("data_model_id_idx")),
    "binary, no (model, label, id)": ("binary", drop_indexes(LABEL_INDEX)),
    "binary, no (model, created_at, id)": ("binary", drop_indexes("data_model_created_id_idx")),
    "binary, no (model, updated_at, id)": ("binary", drop_indexes("data_model_updated_id_idx")),
    "binary, no backlog index": ("binary", drop_indexes("data_search_backlog_idx")),
    "binary, primary key only": (
        "binary",
        drop_indexes(*MODEL_INDEXES, "data_search_backlog_idx"),
    ),
    "binary, no blank checks": ("binary", NO_BLANK_CHECKS),
    "binary, blank checks by btrim": ("binary", TRIMMED_BLANK_CHECKS),
    "binary, blank checks with an ASCII fast path": ("binary", FAST_PATH_BLANK_CHECKS),
    "binary, blank checks by regex (before 0009)": ("binary", REGEX_BLANK_CHECKS),
    "binary, ids given": ("binary with ids", ()),
    "binary, (model, label, id) of every row (before 0010)": (
        "binary",
        (
            *drop_indexes(LABEL_INDEX),
            "CREATE INDEX every_label ON data (model, label, id)",
        ),
    ),
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


def with_ids(block: bytes, first_id: int) -> tuple[bytes, int]:
    """A binary block's rows with an id field in front (the id column first)."""
    out, at, row_id = bytearray(), 0, first_id
    while at < len(block):
        out += struct.pack(">hiq", 7, 8, row_id)
        at += 2
        row_start = at
        for _ in range(6):
            (size,) = struct.unpack_from(">i", block, at)
            at += 4 + max(size, 0)
        out += block[row_start:at]
        row_id += 1
    return bytes(out), row_id


def copy_once(dsn: str, blocks: list[bytes], *, form: str, statements: tuple[str, ...]) -> tuple:
    """(wall s, backend CPU s, WAL MB) of one COPY of blocks, rolled back, then VACUUM."""
    from web.data import copy_binary

    with psycopg.connect(dsn) as conn:
        for statement in statements:
            conn.execute(statement)
        if form == "binary with ids":
            first = conn.execute("SELECT max(id) + 1000 FROM data").fetchone()[0]  # type: ignore[index]
            converted = [blocks[0]]
            for block in blocks[1:-1]:
                done, first = with_ids(block, first)
                converted.append(done)
            blocks = [*converted, blocks[-1]]
        start_lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
        pid, began = conn.info.backend_pid, time.perf_counter()
        cpu = process_cpu(pid)
        columns = (
            copy_binary.COLUMNS.replace("(", "(id, ")
            if form == "binary with ids"
            else copy_binary.COLUMNS
        )
        options = "" if form == "text" else " (FORMAT BINARY)"
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY data {columns} FROM STDIN{options}") as copy,
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
                    form, statements = VARIANTS[name]
                    wall, cpu, wal = copy_once(
                        dsn, blocks[form != "text"], form=form, statements=statements
                    )
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
