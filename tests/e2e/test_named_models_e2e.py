"""Three named models in one deployment, over real HTTP: web -> algorithm -> Celery worker.

Each name gets rows through web's data API, is trained through web and predicted through web;
then, while a client predicts continuously on all three, one name's champion is moved to another
of its versions and rolled back: no prediction fails, and the other names keep answering with
their own versions throughout.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ServiceStarter, WorkerStarter, wait_until

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Each name's small corpus: its own texts and labels, so a label says which model answered.
CORPORA = {
    "default": "fortunes.jsonl",
    "topic": "debian_descriptions.jsonl",
    "sentiment": "debian_sample.jsonl",
}
ROWS_PER_MODEL = 240
MOVED = "topic"


def corpus(name: str) -> list[dict[str, str]]:
    with (FIXTURES / CORPORA[name]).open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, ROWS_PER_MODEL)]
    return [{"text": row["text"], "label": row["label"]} for row in rows]


@pytest.fixture
def named_stack(
    start_service: ServiceStarter,
    start_worker: WorkerStarter,
    test_database_url: str,
    redis_db_url: str,
    model_dir: Path,
) -> str:
    """web, algorithm and a worker training up to three names at once, on one Redis database
    (web announces what the registry says there; the algorithm service follows it).

    The three start side by side: web needs only the algorithm service's address."""
    shared = {"REDIS_URL": redis_db_url, "MODEL_DIR": str(model_dir)}
    worker = start_worker.launch(WORKER_CONCURRENCY="3")
    algorithm = start_service.launch("algorithm", **shared, MODEL_POLL_MS="100")
    web = start_service(
        "web", **shared, DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm.url
    )
    algorithm.wait()
    worker.wait_ready()
    return web


def start_training(web: httpx.Client, model: str) -> str:
    """Start a training of `model` through web; where its job is."""
    started = web.post("/api/train/", json={"model": model})
    assert started.status_code == 202, started.text
    return str(started.headers["Location"])


def trained_version(web: httpx.Client, location: str) -> str:
    """The version the job at `location` published, once it succeeded."""

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = web.get(location).json()
        return job if job["status"] in {"succeeded", "failed"} else None

    job = wait_until(finished, timeout=60, interval=0.2, what=f"the job at {location}")
    assert job["status"] == "succeeded", job
    return str(job["model_version"])


def served(web: httpx.Client, model: str, version: str) -> bool:
    answer = web.post("/api/predict/", json={"model": model, "text": "a library"})
    return answer.status_code == 200 and answer.json()["model_version"] == version


class PredictingClient:
    """One thread per name, predicting in a loop until stopped; every answer is kept."""

    def __init__(self, url: str, headers: dict[str, str], names: list[str]) -> None:
        self.answers: dict[str, list[tuple[int, str | None]]] = {name: [] for name in names}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._predict, args=(url, headers, name)) for name in names
        ]

    def __enter__(self) -> PredictingClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _predict(self, url: str, headers: dict[str, str], name: str) -> None:
        texts = itertools.cycle(row["text"] for row in corpus(name)[:50])
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/api/predict/", json={"model": name, "text": next(texts)})
                    version = answer.json().get("model_version") if answer.is_success else None
                    self.answers[name].append((answer.status_code, version))
                except httpx.HTTPError as exc:
                    self.answers[name].append((0, repr(exc)))


def test_three_names_train_and_serve_while_one_champion_moves_and_rolls_back(
    named_stack: str, web_client: Callable[..., httpx.Client]
) -> None:
    web = web_client(named_stack)
    for name in CORPORA:
        rows = [{**row, "model": name} for row in corpus(name)]
        assert web.post("/api/data/", json=rows, timeout=30).status_code == 201
    locations = {name: start_training(web, name) for name in CORPORA}  # side by side
    versions = {name: trained_version(web, location) for name, location in locations.items()}
    for name, version in versions.items():
        wait_until(functools.partial(served, web, name, version), timeout=5, what=name)
        labels = {row["label"] for row in corpus(name)}
        answer = web.post("/api/predict/", json={"model": name, "texts": ["a", "b"]}).json()
        assert set(answer["labels"]) <= labels and answer["model_version"] == version

    # Another version of the moved name (the gate may promote it or not: either is fine here).
    second = trained_version(web, start_training(web, MOVED))
    wait_until(lambda: served(web, MOVED, second) or served(web, MOVED, versions[MOVED]))
    champion = second if served(web, MOVED, second) else versions[MOVED]
    other = versions[MOVED] if champion == second else second
    aliases = f"/api/models/{MOVED}/aliases/champion/"
    with PredictingClient(named_stack, dict(web.headers), list(CORPORA)) as client:
        time.sleep(0.5)
        moved = web.put(aliases, json={"version": other, "reason": "e2e move", "force": True})
        assert moved.status_code == 200, moved.text
        wait_until(lambda: served(web, MOVED, other), timeout=2, what="the moved champion served")
        time.sleep(0.3)  # the client predicts with the moved champion for a while
        rolled = web.post(aliases + "rollback/", json={"reason": "e2e rollback"})
        assert rolled.status_code == 200, rolled.text
        wait_until(lambda: served(web, MOVED, champion), timeout=2, what="the rollback served")
        time.sleep(0.5)

    failed = {name: [a for a in seen if a[0] != 200] for name, seen in client.answers.items()}
    assert not any(failed.values()), {name: seen[:5] for name, seen in failed.items()}
    for name, seen in client.answers.items():
        assert len(seen) > 5, (name, len(seen))
        expected = {champion, other} if name == MOVED else {versions[name]}
        assert {version for _, version in seen} <= expected, name
    assert {version for _, version in client.answers[MOVED]} == {champion, other}
