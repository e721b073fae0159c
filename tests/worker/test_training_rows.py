"""The worker's SQL: rows streamed in bounded chunks from one snapshot, with a fingerprint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg

from worker.rows import DataFingerprint, Row, database_engine, stream_training_rows

Insert = Callable[[list[tuple[str, str]]], None]


def read_all(
    url: str, *, chunk_rows: int, during: Callable[[], None] | None = None
) -> tuple[list[list[Row]], dict[str, object]]:
    async def collect() -> list[list[Row]]:
        chunks = []
        engine = database_engine(url)
        try:
            rows = stream_training_rows(engine, chunk_rows=chunk_rows, fingerprint=fp)
            async for chunk in rows:
                chunks.append(chunk)
                if during is not None and len(chunks) == 1:
                    # Another session commits rows while this one is half-way through.
                    await asyncio.to_thread(during)
        finally:
            await engine.dispose()
        return chunks

    fp = DataFingerprint()
    chunks = asyncio.run(collect())
    return chunks, fp.as_dict()


def test_rows_come_in_id_order_in_bounded_chunks(
    test_database_url: str, insert_rows: Insert, fixture_corpus: list[tuple[str, str]]
) -> None:
    insert_rows(fixture_corpus)
    chunks, fingerprint = read_all(test_database_url, chunk_rows=100)
    assert max(len(chunk) for chunk in chunks) == 100
    rows = [row for chunk in chunks for row in chunk]
    assert [(text, label) for _, text, label in rows] == fixture_corpus
    ids = [row_id for row_id, _, _ in rows]
    assert ids == sorted(ids)
    assert fingerprint["rows"] == len(fixture_corpus) and fingerprint["max_id"] == ids[-1]


def test_the_fingerprint_is_stable_and_changes_with_a_label(
    test_database_url: str, insert_rows: Insert, fixture_corpus: list[tuple[str, str]]
) -> None:
    insert_rows(fixture_corpus[:200])
    _, first = read_all(test_database_url, chunk_rows=64)
    _, again = read_all(test_database_url, chunk_rows=7)  # chunking does not matter
    assert again == first
    with psycopg.connect(test_database_url, autocommit=True) as conn:
        conn.execute("UPDATE data SET label = 'relabelled' WHERE id = (SELECT min(id) FROM data)")
    _, relabelled = read_all(test_database_url, chunk_rows=64)
    assert relabelled["sha256"] != first["sha256"]
    assert relabelled["rows"] == first["rows"]


def test_rows_committed_mid_stream_are_not_seen(
    test_database_url: str, insert_rows: Insert, fixture_corpus: list[tuple[str, str]]
) -> None:
    insert_rows(fixture_corpus[:300])

    def insert_elsewhere() -> None:
        with psycopg.connect(test_database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO data (text, label, created_at, updated_at) "
                "SELECT 'late row ' || g, 'late', now(), now() FROM generate_series(1, 50) g"
            )

    chunks, fingerprint = read_all(test_database_url, chunk_rows=100, during=insert_elsewhere)
    labels = {label for chunk in chunks for _, _, label in chunk}
    assert "late" not in labels
    assert fingerprint["rows"] == 300
    _, after = read_all(test_database_url, chunk_rows=100)
    assert after["rows"] == 350  # the next read sees them


def test_an_empty_table_yields_nothing(test_database_url: str, insert_rows: Insert) -> None:
    chunks, fingerprint = read_all(test_database_url, chunk_rows=100)
    assert chunks == []
    assert fingerprint["rows"] == 0 and fingerprint["max_id"] is None
