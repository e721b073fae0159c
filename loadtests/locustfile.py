"""Locust load profiles for the algorithm and web services.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 64 -r 16 -t 1m AlgorithmPredictUser
    WEB_URL=http://127.0.0.1:8000 .venv/bin/locust -f loadtests/locustfile.py --headless \\
        -u 20 -r 5 -t 2m MixedUser

Hosts come from ALGORITHM_URL (default http://127.0.0.1:8001) and WEB_URL (default
http://127.0.0.1:8000); `--host` on the command line overrides them for every user class. The
algorithm classes send ALGORITHM_TOKEN (`make run` keeps it in var/algorithm_token); web users
send `Authorization: Bearer $TOKEN` (MixedUser writes: an editor or admin token). Texts
are Debian package descriptions (`loadtests/corpus.py`), or the test fixture's 900 when apt has
no package lists. For the spec's throughput figures use `make bench` (wrk): on two cores locust
itself needs most of a core.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from locust import FastHttpUser, between, constant, task
from locust.contrib.fasthttp import ResponseContextManager

from loadtests.corpus import CorpusUnavailableError, load_debian_corpus, sample_rows

ALGORITHM_URL = os.environ.get("ALGORITHM_URL", "http://127.0.0.1:8001")
WEB_URL = os.environ.get("WEB_URL", "http://127.0.0.1:8000")
# The algorithm service's token (as web sends it); web users send $TOKEN (an API token).
ALGORITHM_TOKEN = os.environ.get("ALGORITHM_TOKEN", "")
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "debian_descriptions.jsonl"
JSON_HEADERS = {"Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


WEB_AUTH = bearer(os.environ.get("TOKEN", ""))


def load_rows() -> list[tuple[str, str]]:
    """5 000 (text, label) rows from apt's package descriptions, or the committed fixture."""
    try:
        return list(sample_rows(load_debian_corpus(), 5_000, seed=7))
    except CorpusUnavailableError:
        rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
        return [(row["text"], row["label"]) for row in rows]


ROWS = load_rows()
TEXTS = [text for text, _ in ROWS]
# Bodies built once: encoding them per request would load locust itself.
SINGLE_BODIES = [json.dumps({"text": text}) for text in TEXTS]
BATCH_BODIES = [json.dumps({"texts": random.Random(i).choices(TEXTS, k=1_000)}) for i in range(8)]
# What a person types into a search box: a word of the texts, at least as long as the API's
# shortest search term (3 characters, web/data/filters.py; shorter ones are answered 400).
MIN_SEARCH_CHARS = 3
SEARCH_WORDS = sorted(
    {
        word
        for text in TEXTS
        for word in (raw.strip(".,;:()[]'\"").lower() for raw in text.split())
        if len(word) >= MIN_SEARCH_CHARS and word.isalnum()
    }
)
# Pages a browsing person reads at most, following `next` (cursor pagination, as a client must).
MAX_PAGES_READ = 3


def check_prediction(response: ResponseContextManager, field: str) -> None:
    """Fail the request unless it answered 200 with `field` and a model_version."""
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
        return
    try:
        body = response.json()
    except ValueError:
        response.failure("answer is not JSON")
        return
    if field not in body or not body.get("model_version"):
        response.failure(f"answer lacks {field} or model_version: {str(body)[:200]}")


class PredictUser(FastHttpUser):
    """POST one of `bodies` to `path` without think time; the answer must carry `field`."""

    abstract = True
    wait_time = constant(0)
    path = "/predict"
    bodies: ClassVar[list[str]] = SINGLE_BODIES
    field = "label"
    request_name: str | None = None
    headers: ClassVar[dict[str, str]] = {**JSON_HEADERS, **bearer(ALGORITHM_TOKEN)}

    @task
    def predict(self) -> None:
        with self.client.post(
            self.path,
            data=random.choice(self.bodies),
            headers=self.headers,
            catch_response=True,
            name=self.request_name,
        ) as response:
            check_prediction(response, self.field)


class AlgorithmPredictUser(PredictUser):
    """The algorithm service, one short text per request."""

    host = ALGORITHM_URL


class AlgorithmBatchPredictUser(PredictUser):
    """The algorithm service, 1 000 texts per request."""

    host = ALGORITHM_URL
    bodies = BATCH_BODIES
    field = "labels"
    request_name = "/predict [1000 texts]"
    network_timeout = 60.0


class WebPredictUser(PredictUser):
    """The web service's predict proxy, one short text per request."""

    host = WEB_URL
    path = "/api/predict/"
    default_headers = WEB_AUTH


class MixedUser(FastHttpUser):
    """A person using the web API: browses and edits rows, and asks for predictions."""

    host = WEB_URL
    default_headers = WEB_AUTH
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.created: list[int] = []

    @task(3)
    def list_rows(self) -> None:
        """The first page, then a few more by following `next`, as a browsing client does."""
        self.read_pages("/api/data/?page_size=20", name="/api/data/ [list]")

    @task(1)
    def search_rows(self) -> None:
        word = random.choice(SEARCH_WORDS)
        self.read_pages(f"/api/data/?search={quote(word)}", name="/api/data/ [search]")

    def read_pages(self, url: str, *, name: str) -> None:
        """GET url and follow up to MAX_PAGES_READ - 1 `next` links; each answer must be a page."""
        for _ in range(random.randint(1, MAX_PAGES_READ)):
            with self.client.get(url, name=name, catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                    return
                page = response.json()
                if "results" not in page:
                    response.failure(f"not a page: {str(page)[:200]}")
                    return
            if not page.get("next"):
                return
            url = page["next"]

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

    @task(4)
    def change_row(self) -> None:
        """Read, relabel or delete a row this user created (2 : 1 : 1)."""
        if not self.created:
            return
        row_id = random.choice(self.created)
        url, action = f"/api/data/{row_id}/", random.choice(["get", "get", "patch", "delete"])
        if action == "get":
            self.client.get(url, name="/api/data/{id}/")
        elif action == "patch":
            self.client.patch(url, json={"label": random.choice(ROWS)[1]}, name="/api/data/{id}/")
        else:
            self.created.remove(row_id)
            self.client.delete(url, name="/api/data/{id}/")

    @task(4)
    def predict(self) -> None:
        data = random.choice(SINGLE_BODIES)
        with self.client.post(
            "/api/predict/", data=data, headers=JSON_HEADERS, catch_response=True
        ) as response:
            check_prediction(response, "label")
