"""Schemathesis against both live services: every check, every phase, a fixed seed.

Each service runs as a real process (as in `make run`) and `schemathesis run` fuzzes it through
its own OpenAPI document, so a schema that lies about an endpoint, a status it did not declare,
a 500 or a body the schema refuses fails the suite with Schemathesis' report (one reproducible
curl command per finding). No Celery worker runs: POST /train and /api/train/ are fuzzed like
everything else, but the job they queue stays queued, so the run never trains a model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from algorithm.artifacts import publish_model_version
from algorithm.ml import train_model
from tests.e2e.schema_fuzz import FuzzRun, run_schemathesis
from tests.helpers import bearer

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

# One run per set of headers. Authentication adds a set per role (and one without a token)
# here; every set is fuzzed with the same seed and checks.
HEADER_SETS = [pytest.param({}, id="anonymous")]

# Fuzzing examples per operation, chosen for more than 1 000 requests per service in under 90 s
# each on two busy cores (measured with today's schemas: algorithm 1 308 requests in 16-30 s,
# web 1 129-1 400 in 38-67 s; web's count varies with the row ids its stateful phase meets).
ALGORITHM_MAX_EXAMPLES = 150
WEB_MAX_EXAMPLES = 100
MIN_REQUESTS = 1_000


@pytest.fixture
def algorithm_url(
    start_service: Callable[..., str],
    fixture_corpus: list[tuple[str, str]],
    redis_db_url: str,
    model_dir: Path,
) -> str:
    """The algorithm service with a published model, so /predict answers 200 and not 503."""
    texts = [text for text, _ in fixture_corpus]
    labels = [label for _, label in fixture_corpus]
    model, metrics = train_model(texts, labels)
    publish_model_version(
        model_dir, model, metrics=metrics, fingerprint={"rows": len(texts)}, rows=len(texts)
    )
    return start_service("algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(model_dir))


@pytest.fixture
def web_url(
    start_service: Callable[..., str],
    algorithm_url: str,
    test_database_url: str,
    transactional_db: Any,  # the rows the run creates are committed: flushed after the test
    tokens: dict[str, str],  # committed too, so the web process finds them
) -> str:
    return start_service("web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm_url)


@pytest.mark.parametrize("with_token", [True, False], ids=["service-token", "no-token"])
def test_algorithm_service_behaves_as_its_schema_says(
    algorithm_url: str, with_token: bool, service_headers: dict[str, str], tmp_path: Path
) -> None:
    """As web calls it (with the service token), and as anyone else would (401s, ignored_auth)."""
    run = run_schemathesis(
        f"{algorithm_url}/openapi.json",
        headers=service_headers if with_token else {},
        max_examples=ALGORITHM_MAX_EXAMPLES,
        report_dir=tmp_path / "report",
    )
    assert run.exit_code == 0, run.failure_report()
    assert run.requests >= MIN_REQUESTS, run.summary()


# A CSV or NDJSON body is a string to JSON Schema, which cannot say which strings are valid rows:
# a schema-valid string may hold a bad line, which the import rightly refuses with 400. So the
# import is fuzzed in a run of its own without the positive-data check (this Schemathesis applies
# per-operation check settings to other operations too, so a config file cannot single it out).
IMPORT_PATH = "/api/data/import/"
WEB_RUNS = {
    "api": ("--exclude-path", IMPORT_PATH),
    # One operation has no links to follow: the stateful phase has nothing to do there.
    "import": (
        "--include-path",
        IMPORT_PATH,
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing",
    ),  # fmt: skip
}


def test_web_service_behaves_as_its_schema_says(
    web_url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    """The full run, as admin: every operation answers past the token check."""
    runs = [
        run_schemathesis(
            f"{web_url}/api/schema/?format=json",
            headers=bearer(tokens["admin"]),
            max_examples=WEB_MAX_EXAMPLES,
            report_dir=tmp_path / name,
            options=options,
        )
        for name, options in WEB_RUNS.items()
    ]
    for run in runs:
        assert run.exit_code == 0, run.failure_report()
    assert sum(run.requests for run in runs) >= MIN_REQUESTS, [run.summary() for run in runs]


# Short runs for the callers the full run does not play: where 401s, 403s and the
# ignored_auth check (a declared token that is not enforced) matter. One web service for all;
# valid data only (the full run sends the invalid data), so each is about a third as long.
SHORT_RUN_CALLERS = ["reader", "editor", None]
SHORT_RUN_PHASES = "examples,coverage"
SHORT_RUN_OPTIONS = (*WEB_RUNS["api"], "--mode", "positive")
SHORT_RUN_MAX_EXAMPLES = 5


def test_web_refuses_what_each_role_and_no_token_may_not_do(
    web_url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    runs: dict[str, FuzzRun] = {}
    for role in SHORT_RUN_CALLERS:
        name = role or "anonymous"
        runs[name] = run_schemathesis(
            f"{web_url}/api/schema/?format=json",
            headers=bearer(tokens[role]) if role else {},
            max_examples=SHORT_RUN_MAX_EXAMPLES,
            report_dir=tmp_path / name,
            phases=SHORT_RUN_PHASES,
            options=SHORT_RUN_OPTIONS,
        )
    for name, run in runs.items():
        assert run.exit_code == 0, f"as {name}: {run.failure_report()}"
        assert run.requests > 0, f"as {name}: {run.summary()}"
