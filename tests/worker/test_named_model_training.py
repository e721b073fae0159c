"""Named models in the worker: each name trains on its own rows, side by side with other names,
and becomes that name's champion only; retention counts each name's versions on its own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery

from core import registry, serving_protocol
from core.jobs import TRAIN_TASK, JobStore
from tests.registry.conftest import make_version  # noqa: F401 (a fixture)
from worker.config import WorkerSettings
from worker.publishing import prune
from worker.rows import database_engine

Job = dict[str, Any]
Rows = list[tuple[str, str]]
SENTIMENT = {"games": "positive", "fonts": "negative"}  # two of the corpus's labels, renamed


@pytest.fixture
def insert_named_rows(transactional_db: Any) -> Callable[[str, Rows], None]:
    """Insert (text, label) rows of one model name, committed."""
    from django.db import connection, transaction

    def insert(model: str, rows: Rows) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO data (model, text, label, created_at, updated_at) "
                "SELECT %s, t, l, now(), now() FROM unnest(%s::text[], %s::text[]) AS u(t, l)",
                [model, [text for text, _ in rows], [label for _, label in rows]],
            )

    return insert


@pytest.fixture
def request_named_training(redis_db_url: str, job_store: JobStore) -> Iterator[Callable[..., Job]]:
    """Request a training of a name as the algorithm service does: the task names the model."""
    sender = Celery("test-sender", set_as_current=False)
    sender.conf.update(broker_url=redis_db_url, task_serializer="json", accept_content=["json"])

    def request(model: str) -> Job:
        def enqueue(job_id: str) -> None:
            sender.send_task(TRAIN_TASK, args=[job_id], kwargs={"model": model})

        return job_store.request_training(enqueue=enqueue, model=model)

    yield request
    sender.close()


def recorded(database_url: str, job: Job) -> tuple[Any, ...]:
    """The model names of the job's run and version, and its version's rows and labels."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT r.model, v.model, v.rows, v.labels FROM training_run r "
            "JOIN model_version v ON v.version = r.version_id WHERE r.id = %s",
            (job["job_id"],),
        ).fetchone()
    assert row is not None, job
    return row[0], row[1], row[2], sorted(row[3])


def aliases(database_url: str) -> dict[tuple[str, str], str | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT model, name, version_id FROM model_alias").fetchall()
    return {(model, name): version for model, name, version in rows}


@pytest.mark.slow
def test_a_named_model_trains_its_own_rows_beside_default_and_becomes_its_champion_only(
    start_worker: Callable[..., Any],
    insert_named_rows: Callable[[str, Rows], None],
    fixture_corpus: Rows,
    request_training: Callable[[], Job],
    request_named_training: Callable[..., Job],
    wait_for_job: Callable[..., Job],
    test_database_url: str,
    redis_db_url: str,
    model_dir: Path,
) -> None:
    default_rows = fixture_corpus[::9]  # 100 rows, 6 labels
    sentiment_rows = [
        (t, SENTIMENT[label]) for t, label in fixture_corpus[1::3] if label in SENTIMENT
    ]
    insert_named_rows("default", default_rows)
    insert_named_rows("sentiment", sentiment_rows)
    insert_named_rows("topic", [(t, "ignored") for t, _ in fixture_corpus[2::20]])

    # Queued before any worker runs: one job per name, and a second request joins its name's.
    default_job = request_training()
    sentiment_job = request_named_training("sentiment")
    assert request_named_training("sentiment")["job_id"] == sentiment_job["job_id"]
    assert sentiment_job["job_id"] != default_job["job_id"]
    assert (sentiment_job["model"], default_job["model"]) == ("sentiment", "default")
    not_a_name = request_named_training("Not A Name")  # a sender that skipped validation

    start_worker(WORKER_CONCURRENCY="2")
    default_done = wait_for_job(default_job["job_id"], timeout=120)
    sentiment_done = wait_for_job(sentiment_job["job_id"], timeout=120)
    for job in (default_done, sentiment_done):
        assert job["status"] == "succeeded" and job["promoted"] is True, job
    refused = wait_for_job(not_a_name["job_id"])
    assert refused["status"] == "failed" and "cannot train model 'Not A Name'" in refused["error"]
    assert "lowercase letters" in refused["error"]
    assert request_named_training("Not A Name")["job_id"] != refused["job_id"]  # not stuck
    # Side by side: each started before the other finished.
    assert sentiment_done["started_at"] < default_done["finished_at"]
    assert default_done["started_at"] < sentiment_done["finished_at"]

    # Each trained on its own rows only: the other names' rows and labels are not in it.
    assert recorded(test_database_url, sentiment_done) == (
        "sentiment",
        "sentiment",
        len(sentiment_rows),
        ["negative", "positive"],
    )
    default_labels = sorted({label for _, label in default_rows})
    assert recorded(test_database_url, default_done) == (
        "default",
        "default",
        len(default_rows),
        default_labels,
    )

    # A second training of the name: judged against, and replacing, that name's champion only.
    again = wait_for_job(request_named_training("sentiment")["job_id"], timeout=120)
    assert again["status"] == "succeeded" and again["promoted"] is True, again
    assert again["job_id"] != sentiment_job["job_id"]
    found = aliases(test_database_url)
    assert found[("sentiment", "champion")] == again["model_version"]
    assert found[("sentiment", "previous")] == sentiment_done["model_version"]
    assert found[("default", "champion")] == default_done["model_version"]
    assert found[("default", "previous")] is None
    # Only default has a `current` link; the name is served from its own desired state.
    assert os.readlink(model_dir / "current") == default_done["model_version"]
    with redis.Redis.from_url(redis_db_url) as client:
        desired = serving_protocol.read_desired(client, "sentiment")
        assert desired is not None and desired.champion == again["model_version"]
        default_desired = serving_protocol.read_desired(client)
        assert default_desired is not None
        assert default_desired.champion == default_done["model_version"]
    with psycopg.connect(test_database_url) as conn:
        moves = conn.execute(
            "SELECT after->>'version' FROM audit_event WHERE model = 'sentiment' "
            "AND target = 'alias:champion' ORDER BY id"
        ).fetchall()
    assert [version for (version,) in moves] == [
        sentiment_done["model_version"],
        again["model_version"],
    ]


def versions_named(count: int) -> list[str]:
    """Version directory names, oldest first (they sort by time)."""
    return [f"20261201T0000000000{i:02d}Z-{i:08x}" for i in range(count)]


def test_retention_counts_each_names_versions_and_champions_on_its_own(
    transactional_db: Any,
    make_version: Callable[..., Any],  # noqa: F811
    test_database_url: str,
    model_dir: Path,
) -> None:
    """MODEL_RETENTION=2 and sentiment's versions newest on the volume: counted together, every
    soft-deleted version would be beyond retention and default's champion moves would be the last
    ones. Per name, default's newest and sentiment's last champions stay restorable; only a
    version no rule keeps loses its files."""
    from django.db import transaction
    from django.utils import timezone

    from web.registry.database import DjangoDatabase
    from web.registry.models import ModelVersion

    names = versions_named(7)  # oldest first
    gone, sentiment_champion, default_previous, champion, newest_default, *sentiment_newest = names
    for version in names:
        (model_dir / version).mkdir()
        model = "sentiment" if version in (sentiment_champion, *sentiment_newest) else "default"
        make_version(version=version, model=model)
    os.symlink(champion, model_dir / "current")
    by = registry.Actor("test")
    with transaction.atomic():
        db = DjangoDatabase()
        promoted = [(sentiment_champion, None), (sentiment_newest[-1], sentiment_champion)]
        for version, judged in promoted:
            registry.promote(
                db, version=version, judged_champion=judged, actor=by, reason="", model="sentiment"
            )
        registry.move_alias(
            db, alias="previous", version=None, reason="", actor=by, tolerance=1, model="sentiment"
        )
        for version, judged in (
            (gone, None),
            (default_previous, gone),
            (champion, default_previous),
        ):
            registry.promote(db, version=version, judged_champion=judged, actor=by, reason="")
    deleted = [gone, sentiment_champion, newest_default]
    ModelVersion.objects.filter(version__in=deleted).update(deleted_at=timezone.now())

    async def run() -> None:
        engine = database_engine(test_database_url)
        try:
            await prune(WorkerSettings(model_retention=2, model_dir=model_dir), engine)
        finally:
            await engine.dispose()

    asyncio.run(run())

    assert {path.name for path in model_dir.iterdir()} == {"current", *names} - {gone}
    removed = ModelVersion.objects.filter(files_removed_at__isnull=False)
    assert list(removed.values_list("version", flat=True)) == [gone]


def test_a_runs_metrics_name_its_model_and_never_an_arbitrary_string() -> None:
    from worker.observability import run_model_label

    assert run_model_label(None) == "default"  # default's tasks carry no name
    assert run_model_label("sentiment") == "sentiment"
    assert run_model_label("Robert'); DROP TABLE data") == "invalid"
    assert run_model_label("versions") == "invalid"
