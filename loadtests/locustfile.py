"""Locust load profiles for the algorithm and web services.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 64 -r 16 -t 1m AlgorithmPredictUser
    WEB_URL=http://127.0.0.1:8000 .venv/bin/locust -f loadtests/locustfile.py --headless \\
        -u 20 -r 5 -t 2m MixedUser

Hosts come from ALGORITHM_URL (default http://127.0.0.1:8001) and WEB_URL (default
http://127.0.0.1:8000); `--host` on the command line overrides them for every user class. Texts
are Debian package descriptions (`loadtests/corpus.py`), or a small built-in list when apt has
no package lists. For the spec's throughput figures use `make bench` (wrk): on two cores locust
itself needs most of a core.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from typing import Any

from locust import FastHttpUser, between, constant, task
from locust.contrib.fasthttp import ResponseContextManager

from loadtests.corpus import CorpusUnavailableError, load_debian_corpus, sample_rows

ALGORITHM_URL = os.environ.get("ALGORITHM_URL", "http://127.0.0.1:8001")
WEB_URL = os.environ.get("WEB_URL", "http://127.0.0.1:8000")
SAMPLE_ROWS = 5_000
BATCH_TEXTS = 1_000
JSON_HEADERS = {"Content-Type": "application/json"}

FALLBACK_ROWS = [
    ("Python 3 bindings for the GObject introspection library", "python"),
    ("HTTP library with thread-safe connection pooling for Python 3", "python"),
    ("GNU C Library: shared libraries", "libs"),
    ("XML parsing C library - runtime library", "libs"),
    ("development files for the libpng PNG library", "libdevel"),
    ("header files and static library for zlib compression", "libdevel"),
    ("documentation for the GNU Compiler Collection", "doc"),
    ("API reference manual for the GTK toolkit", "doc"),
    ("Perl module for parsing and writing YAML", "perl"),
    ("Perl extension for reading CSV files", "perl"),
    ("command-line utility to query and transform JSON", "utils"),
    ("terminal multiplexer with session management", "utils"),
    ("lightweight web server with a small memory footprint", "httpd"),
    ("network packet analyzer with a console interface", "net"),
    ("SSH client for secure remote login", "net"),
    ("scientific plotting package with a Python interface", "science"),
    ("molecular dynamics simulation toolkit", "science"),
    ("classic arcade game with retro graphics", "games"),
    ("system administration tool to manage user accounts", "admin"),
    ("backup tool with deduplication and encryption", "admin"),
]


def load_rows() -> list[tuple[str, str]]:
    """(text, label) rows from apt's package descriptions, or the built-in fallback list."""
    try:
        corpus = load_debian_corpus()
    except CorpusUnavailableError:
        return list(FALLBACK_ROWS)
    return list(sample_rows(corpus, min(SAMPLE_ROWS, len(corpus)), seed=7))


ROWS = load_rows()
TEXTS = [text for text, _ in ROWS]
# A handful of prebuilt batch bodies: encoding 1 000 texts per request would load locust itself.
BATCH_BODIES = [
    json.dumps({"texts": random.Random(seed).choices(TEXTS, k=BATCH_TEXTS)}) for seed in range(8)
]


def check_prediction(response: ResponseContextManager, field: str) -> None:
    """Fail the request unless it answered 200 with `field` and a model_version."""
    if response.status_code != 200:
        response.failure(
            f"HTTP {response.status_code}: {response.text[:200] if response.text else ''}"
        )
        return
    try:
        body = response.json()
    except ValueError:
        response.failure("answer is not JSON")
        return
    if field not in body or not body.get("model_version"):
        response.failure(f"answer lacks {field} or model_version: {str(body)[:200]}")


class AlgorithmPredictUser(FastHttpUser):
    """The algorithm service, one short text per request, no think time."""

    host = ALGORITHM_URL
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        body = {"text": random.choice(TEXTS)}
        with self.client.post("/predict", json=body, catch_response=True) as response:
            check_prediction(response, "label")


class AlgorithmBatchPredictUser(FastHttpUser):
    """The algorithm service, 1 000 texts per request."""

    host = ALGORITHM_URL
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.bodies = itertools.cycle(random.sample(BATCH_BODIES, len(BATCH_BODIES)))

    @task
    def predict_batch(self) -> None:
        with self.client.post(
            "/predict",
            data=next(self.bodies),
            headers=JSON_HEADERS,
            catch_response=True,
            name="/predict [1000 texts]",
        ) as response:
            check_prediction(response, "labels")


class WebPredictUser(FastHttpUser):
    """The web service's predict proxy, one short text per request, no think time."""

    host = WEB_URL
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        body = {"text": random.choice(TEXTS)}
        with self.client.post("/api/predict/", json=body, catch_response=True) as response:
            check_prediction(response, "label")


class MixedUser(FastHttpUser):
    """A person using the web API: browses and edits rows, and asks for predictions."""

    host = WEB_URL
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.created: list[int] = []

    @task(3)
    def list_rows(self) -> None:
        self.client.get("/api/data/?page_size=20", name="/api/data/ [list]")

    @task(1)
    def search_rows(self) -> None:
        word = random.choice(random.choice(TEXTS).split())
        self.client.get("/api/data/", params={"search": word}, name="/api/data/ [search]")

    @task(2)
    def create_row(self) -> None:
        text, label = random.choice(ROWS)
        with self.client.post(
            "/api/data/", json={"text": text, "label": label}, catch_response=True
        ) as response:
            if response.status_code == 201:
                self.created.append(int(response.json()["id"]))
            else:
                response.failure(f"HTTP {response.status_code}")

    @task(2)
    def read_row(self) -> None:
        if self.created:
            self.client.get(f"/api/data/{random.choice(self.created)}/", name="/api/data/{id}/")

    @task(1)
    def edit_row(self) -> None:
        if self.created:
            change: dict[str, Any] = {"label": random.choice(ROWS)[1]}
            row_id = random.choice(self.created)
            self.client.patch(f"/api/data/{row_id}/", json=change, name="/api/data/{id}/")

    @task(1)
    def delete_row(self) -> None:
        if self.created:
            row_id = self.created.pop(random.randrange(len(self.created)))
            self.client.delete(f"/api/data/{row_id}/", name="/api/data/{id}/")

    @task(4)
    def predict(self) -> None:
        body = {"text": random.choice(TEXTS)}
        with self.client.post("/api/predict/", json=body, catch_response=True) as response:
            check_prediction(response, "label")
