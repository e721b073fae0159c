"""The worker records runs and versions, and the gate decides: a real Celery worker, real SQL."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from core import serving_protocol

pytestmark = pytest.mark.slow
Job = dict[str, Any]


def set_labels(ids: list[int], labels: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE data SET label = u.l FROM unnest(%s::bigint[], %s::text[]) AS u(i, l) "
            "WHERE data.id = u.i",
            [ids, labels],
        )


def rows_by_id() -> tuple[list[int], list[str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, label FROM data ORDER BY id")
        found = cursor.fetchall()
    return [row[0] for row in found], [row[1] for row in found]


def test_a_worse_model_is_not_promoted_a_better_one_is_and_all_are_recorded(
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    fixture_corpus: list[tuple[str, str]],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
    model_dir: Path,
    redis_db_url: str,
    api: Any,
) -> None:
    from web.registry.models import Alias

    corpus = list(fixture_corpus)
    random.Random(7).shuffle(corpus)
    insert_rows(corpus[:300])
    start_worker()

    first = wait_for_job(request_training()["job_id"], timeout=120)
    assert first["status"] == "succeeded" and first["promoted"] is True, first
    assert os.readlink(model_dir / "current") == first["model_version"]
    desired = serving_protocol.read_desired(redis.Redis.from_url(redis_db_url))
    assert desired is not None and desired.champion == first["model_version"]

    # The same rows with their labels shuffled: a model that learned nothing.
    ids, labels = rows_by_id()
    shuffled = labels[:]
    random.Random(1).shuffle(shuffled)
    set_labels(ids, shuffled)
    worse = wait_for_job(request_training()["job_id"], timeout=120)
    assert worse["status"] == "succeeded" and worse["promoted"] is False, worse
    assert os.readlink(model_dir / "current") == first["model_version"]
    report = api.get(f"/api/models/versions/{worse['model_version']}/").json()["gate"]
    assert report["basis"] == "recorded_holdout"  # no new rows: each version's own holdout
    assert report["candidate"]["macro_f1"] < report["champion"]["macro_f1"] - 0.01
    assert "is below" in report["decision"]

    # True labels back, and 600 more rows: better, judged on new held-out rows both never saw.
    set_labels(ids, labels)
    insert_rows(corpus[300:])
    better = wait_for_job(request_training()["job_id"], timeout=120)
    assert better["status"] == "succeeded" and better["promoted"] is True, better
    report = api.get(f"/api/models/versions/{better['model_version']}/").json()["gate"]
    assert report["basis"] == "shared_holdout" and report["rows"] >= 50, report
    assert report["champion"]["version"] == first["model_version"]
    assert os.readlink(model_dir / "current") == better["model_version"]
    aliases = {row.name: row.version_id for row in Alias.objects.all()}
    assert aliases["champion"] == better["model_version"]
    assert aliases["previous"] == first["model_version"]

    def registry_listing() -> tuple[list[Any], list[Any]]:
        runs = api.get("/api/train/").json()["results"]
        versions = api.get("/api/models/versions/").json()["results"]
        return runs, versions

    runs, versions = registry_listing()
    assert [run["id"] for run in runs] == [better["job_id"], worse["job_id"], first["job_id"]]
    assert [run["promoted"] for run in runs] == [True, False, True]
    assert all(run["status"] == "succeeded" and run["metrics"]["macro_f1"] for run in runs)
    assert runs[0]["rows"] == 900 and runs[0]["parameters"]
    assert [v["promoted"] for v in versions] == [True, False, True]
    # Redis forgets everything (job keys expired, a flush): the history stays.
    redis.Redis.from_url(redis_db_url).flushdb()
    assert registry_listing() == (runs, versions)


def test_a_failed_run_is_recorded_with_its_error(
    start_worker: Callable[..., Any],
    insert_rows: Callable[[list[tuple[str, str]]], None],
    request_training: Callable[[], Job],
    wait_for_job: Callable[..., Job],
) -> None:
    from web.registry.models import TrainingRun

    insert_rows([("only one label here", "games"), ("and again", "games")])
    start_worker()
    job = wait_for_job(request_training()["job_id"])
    assert job["status"] == "failed"
    run = TrainingRun.objects.get(id=job["job_id"])
    assert run.status == "failed" and run.error == job["error"] and run.finished_at is not None
    assert run.version is None
