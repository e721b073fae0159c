"""The search backlog: imported rows the trigram index does not hold yet, and the drain.

An import writes its rows with `search_indexed = false`, so its COPY does not wait for the
trigram index (most of an import's cost). Searches still find them at once: they read such rows
through the small backlog index (`web.data.filters.matching_every_term`). After the import
commits, the drain flips the backlog to `search_indexed = true` in short transactions of
DRAIN_BATCH_ROWS rows, which puts the rows into the trigram index; a crash mid-way loses
nothing (the rest waits, still found, for the next drain). One drain runs at a time across all
processes and replicas (a PostgreSQL advisory lock); a process that finds it taken leaves its
rows to the drain that holds it, which looks for new rows after letting go of the lock.

A big backlog (BACKLOG_INDEX_MIN_ROWS rows or more, e.g. a million-row import) is first given
indexes of its own, built in bulk (`CREATE INDEX CONCURRENTLY ... WHERE NOT search_indexed`):
a label B-tree (the list's label index holds indexed rows only), then a trigram index (34-46 s
per million rows here, half of what the flips took). From then on a list read by label or a
search reads the waiting rows from them instead of testing every waiting row, and the drain
drops them once the backlog is empty (docs/data.md, "The window after an import").
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.backends.utils import CursorWrapper

from web.data.models import TRIGRAM_INDEX

logger = logging.getLogger(__name__)

DRAIN_BATCH_ROWS = 5000
# Any fixed number names the lock; this one spells "backlog" in ASCII.
DRAIN_LOCK = 0x6261636B6C6F67
# The next rows of the backlog, walked by id so that no batch re-reads the ones flipped before,
# then flipped by primary key: two plain statements whose plans cannot go wrong on the stale
# statistics of a just-imported table (one UPDATE ... WHERE id IN (SELECT ... LIMIT) ran for
# minutes on its first batch right after an import, 25 ms per 200 rows later).
NEXT_BATCH_SQL = "SELECT id FROM data WHERE NOT search_indexed AND id > %s ORDER BY id LIMIT %s"
# NOT search_indexed: a row an API write indexed meanwhile is left alone.
FLIP_SQL = "UPDATE data SET search_indexed = true WHERE id = ANY(%s) AND NOT search_indexed"
# An index scan of the whole backlog index: it also marks the entries the drain left dead, so
# that searches skip them from then on instead of visiting their rows until the next VACUUM.
ANY_LEFT_SQL = "SELECT EXISTS (SELECT 1 FROM data WHERE NOT search_indexed)"
# The imports committed before a walk starts: every one of their rows is flipped by that walk.
IMPORTS_SQL = "SELECT id FROM data_search_backlog_import"
IMPORTS_DONE_SQL = "DELETE FROM data_search_backlog_import WHERE id = ANY(%s)"
IMPORTS_LEFT_SQL = "SELECT EXISTS (SELECT 1 FROM data_search_backlog_import)"
# After the last flip: the trigram index's pending list (GIN's fast update) merged into the
# index, so that searches after a drain do not scan up to gin_pending_list_limit of it.
MERGE_PENDING_SQL = f"SELECT gin_clean_pending_list('{TRIGRAM_INDEX}'::regclass)"


# A backlog this big makes a search that tests every waiting row (~1 us each on a quiet core,
# several times that under load) slower than the list's 50 ms target; a smaller one is drained
# in seconds, and building an index for it would cost more than it saves.
BACKLOG_INDEX_MIN_ROWS = 50_000
BACKLOG_TRIGRAM_INDEX = "data_backlog_trgm_idx"
# The waiting rows' own (model, label, id) B-tree: the list's label index holds indexed rows
# only (web/data/models.py), so a list read by label (`?label=`, `ordering=label`) takes the
# waiting rows from this one. Built first: a B-tree of a million rows takes a few seconds, the
# trigram index tens.
BACKLOG_LABEL_INDEX = "data_backlog_label_idx"
BACKLOG_INDEXES = (BACKLOG_LABEL_INDEX, BACKLOG_TRIGRAM_INDEX)
# The trigram index's expression over the waiting rows only: the page fill's query for waiting
# rows (`NOT search_indexed` and the terms) reads it (web/data/pagination.py).
BUILD_BACKLOG_INDEXES_SQL = (
    f"CREATE INDEX CONCURRENTLY {BACKLOG_LABEL_INDEX} ON data "
    "(model, label, id) WHERE NOT search_indexed",
    f"CREATE INDEX CONCURRENTLY {BACKLOG_TRIGRAM_INDEX} ON data "
    "USING gin (UPPER(text) gin_trgm_ops) WHERE NOT search_indexed",
)
# A build cut short (a crash, a timeout) leaves an invalid index that writes still maintain.
DROP_BACKLOG_INDEXES_SQL = tuple(
    f"DROP INDEX CONCURRENTLY IF EXISTS {name}" for name in BACKLOG_INDEXES
)
BACKLOG_ROWS_SQL = "SELECT COALESCE(SUM(rows), 0) FROM data_search_backlog_import"


def backlog_waiting() -> bool:
    """Whether an import's rows may still wait for the trigram index (one tiny table's read).

    Read before the trigram index is searched: a drain deletes an import's mark only after its
    flips have committed, so a search that finds no mark finds those rows in the index.
    """
    with connection.cursor() as cursor:
        cursor.execute(IMPORTS_LEFT_SQL)
        return bool(cursor.fetchone()[0])


def index_backlog(cursor: CursorWrapper, *, min_rows: int = BACKLOG_INDEX_MIN_ROWS) -> bool:
    """Build the backlog's own indexes when min_rows or more rows wait; True if built.

    Concurrently, so imports and API writes go on; they also write into it while it exists
    (the cost the backlog spares imports), which is why the drain drops it when done. Not
    inside a transaction (where CREATE INDEX CONCURRENTLY cannot run): the flips come alone.
    """
    if connection.in_atomic_block:
        return False
    cursor.execute(BACKLOG_ROWS_SQL)
    if cursor.fetchone()[0] < min_rows:
        return False
    drop_backlog_indexes(cursor)
    # Each build waits for older transactions and reads the table twice: the transfers' bound.
    timeout = str(settings.TRANSFER_STATEMENT_TIMEOUT_MS)
    cursor.execute("SELECT set_config('statement_timeout', %s, false)", [timeout])
    try:
        began = time.perf_counter()
        for build in BUILD_BACKLOG_INDEXES_SQL:
            cursor.execute(build)
        logger.info("search backlog: indexed in bulk in %.1f s", time.perf_counter() - began)
        return True
    except DatabaseError:  # searches read the waiting rows one by one, as without it
        logger.exception("search backlog: the bulk index failed; draining without it")
        drop_backlog_indexes(cursor)
        return False
    finally:
        cursor.execute("RESET statement_timeout")


def drop_backlog_indexes(cursor: CursorWrapper) -> None:
    for drop in DROP_BACKLOG_INDEXES_SQL:
        cursor.execute(drop)


def drain_search_backlog(
    *, batch_rows: int = DRAIN_BATCH_ROWS, index_min_rows: int = BACKLOG_INDEX_MIN_ROWS
) -> int:
    """Put every backlog row into the trigram index, one batch per transaction; return how many.

    Returns 0 at once when another drain holds the lock (it will index these rows too).
    """
    flipped = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [DRAIN_LOCK])
            if not cursor.fetchone()[0]:
                return flipped
            try:
                cursor.execute(IMPORTS_SQL)
                imports = [row[0] for row in cursor.fetchall()]
                indexed_in_bulk = index_backlog(cursor, min_rows=index_min_rows)
                after = 0
                while True:
                    cursor.execute(NEXT_BATCH_SQL, [after, batch_rows])
                    ids = [row[0] for row in cursor.fetchall()]
                    if not ids:
                        break
                    cursor.execute(FLIP_SQL, [ids])
                    flipped += cursor.rowcount
                    after = ids[-1]
                if flipped:
                    cursor.execute(MERGE_PENDING_SQL)
                cursor.execute(IMPORTS_DONE_SQL, [imports])
                if indexed_in_bulk:  # every waiting row of those imports is flipped
                    drop_backlog_indexes(cursor)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [DRAIN_LOCK])
            # Rows committed by an import whose drain found the lock taken, and rows behind the
            # walk's position: looked for after letting go, so none is left behind.
            cursor.execute(ANY_LEFT_SQL)
            rows_left = cursor.fetchone()[0]
            cursor.execute(IMPORTS_LEFT_SQL)
            if not rows_left and not cursor.fetchone()[0]:
                return flipped


class BacklogDrainer:
    """Runs `drain_search_backlog` in one background thread per process, on request.

    A request while the thread runs is remembered, and the thread drains once more before it
    ends, so rows committed during a drain are never left waiting for the next import.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._requested = False

    def request(self) -> None:
        """Start draining the backlog in the background (or once more, if a drain is running)."""
        with self._lock:
            self._requested = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="search-backlog-drain", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._requested:
                        self._thread = None
                        return
                    self._requested = False
                began = time.perf_counter()
                try:
                    flipped = drain_search_backlog()
                except Exception:  # the rows stay in the backlog, still found; logged for people
                    logger.exception("search backlog drain failed; the next import retries it")
                    connection.close()  # a broken connection is not reused by the next drain
                    continue
                if flipped:
                    seconds = time.perf_counter() - began
                    logger.info("search backlog: %d rows indexed in %.1f s", flipped, seconds)
        finally:
            connections.close_all()  # this thread's connection, opened by the drain


drainer = BacklogDrainer()
