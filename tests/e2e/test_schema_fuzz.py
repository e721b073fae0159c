"""Schemathesis against both live services: every check, every phase, a fixed seed.

Each service runs as a real process (as in `make run`) and `schemathesis run` fuzzes it through
its own OpenAPI document, so a schema that lies about an endpoint, a status it did not declare,
a 500 or a body the schema refuses fails the suite with Schemathesis' report (one reproducible
curl command per finding). No Celery worker runs: POST /train and /api/train/ are fuzzed like
everything else, but the job they queue stays queued, so the run never trains a model (and one
algorithm service, whose model never changes, serves the whole module; its queued job is
dropped before each test; one web service in front of it too, its rows and tokens emptied
after each test).

One full run per service plays its usual caller (web with the service token; an admin on web,
past every role check); the other callers (no token; reader, editor, no token on web) get short
runs with valid data only, where what differs for them is checked: 401s, 403s and ignored_auth.
Every run uses every check and must find nothing.

Both services run with texts of at most 5 000 characters (PREDICT_MAX_CHARS, TEXT_MAX_CHARS):
the coverage phase probes each limit at its edges, and at the default 100 000 building those
cases took most of a run (about 5 s of CPU per run, before the first request) and still dropped
a third of /predict's cases; the limits are checked at their defaults in tests/e2e and tests/web.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import redis

from algorithm.ml.artifacts import publish_model_version
from algorithm.ml.training import TrainedModel
from tests.e2e.schema_fuzz import (
    FuzzRun,
    build_unicode_tables,
    run_schemathesis,
    run_side_by_side,
)
from tests.helpers import ServiceStarter, bearer, signing_keys

# The whole module runs as committing tests (the algorithm ones only pay the flush after them):
# pytest-django runs those after the others and would split the module in two, starting and
# training for its algorithm service twice.
pytestmark = [pytest.mark.slow, pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

# Fuzzing examples per operation, chosen for more than 1 000 requests per service (measured on
# 2026-12-07: algorithm 1 603 requests; web's admin runs 1 893 with 25 examples (api 1 400, v2
# 449, import 44), 2 346 with 40, 3 501 with 100; web's count varies with the row ids its
# stateful phase meets). 25 (was 40) keeps web well above the floor, with every operation,
# phase and check: fewer random examples per operation in the fuzzing phase only.
ALGORITHM_MAX_EXAMPLES = 150
WEB_MAX_EXAMPLES = 25
# The registry's routes per model name (/api/models/{name}/...) are the same views as
# /api/models/... (web/urls.py), which get WEB_MAX_EXAMPLES: the copies get fewer random examples
# in the fuzzing phase, and every other phase and check as they are. Their validation of the
# name itself is one path parameter, which the coverage phase probes at its edges.
NAMED_ROUTES = r"^/api/models/\{name\}/"
NAMED_MAX_EXAMPLES = 5
MIN_REQUESTS = 1_000
# Short runs, for the callers a full run does not play: valid data only (the full run sends the
# invalid data, to the same operations), two phases, few examples.
SHORT_RUN_PHASES = "examples,coverage"
SHORT_RUN_OPTIONS = ("--mode", "positive")
SHORT_RUN_MAX_EXAMPLES = 5
TEXT_LIMITS = {"PREDICT_MAX_CHARS": "5000", "TEXT_MAX_CHARS": "5000"}  # see the docstring


@pytest.fixture(scope="module")
def hypothesis_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Hypothesis directory every run of the module shares (tests/e2e/schema_fuzz.py)."""
    return tmp_path_factory.mktemp("hypothesis")


@pytest.fixture(scope="module")
def shared_urls(
    start_module_service: ServiceStarter,
    hypothesis_dir: Path,
    fixture_corpus: list[tuple[str, str]],
    fixture_training: tuple[TrainedModel, dict[str, Any]],
    module_redis_url: str,
    test_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, str]:
    """The algorithm service with a published model, so /predict answers 200 and not 503, and
    web in front of it: started side by side, shared by the module's tests (web's state is the
    database, which is emptied after each test). The runs' Unicode tables are built meanwhile."""
    tables = build_unicode_tables(hypothesis_dir)
    model_dir = tmp_path_factory.mktemp("models")
    model, metrics = fixture_training
    publish_model_version(
        model_dir,
        model,
        metrics=metrics,
        fingerprint={"rows": len(fixture_corpus)},
        rows=len(fixture_corpus),
        signing_keys=signing_keys(),
    )
    algorithm = start_module_service.launch(
        "algorithm", REDIS_URL=module_redis_url, MODEL_DIR=str(model_dir), **TEXT_LIMITS
    )
    web = start_module_service(
        "web", DATABASE_URL=test_database_url, ALGORITHM_URL=algorithm.url, **TEXT_LIMITS
    )
    assert tables.wait(timeout=120) == 0, "Hypothesis' Unicode tables were not built"
    return algorithm.wait(), web


@pytest.fixture
def algorithm_url(shared_urls: tuple[str, str], module_redis_url: str) -> str:
    """The module's algorithm service without the jobs an earlier run queued (its only state)."""
    with redis.Redis.from_url(module_redis_url) as client:
        client.flushdb()
    return shared_urls[0]


@pytest.fixture
def web_url(
    shared_urls: tuple[str, str],
    algorithm_url: str,
    transactional_db: Any,  # the rows the run creates are committed: flushed after the test
    tokens: dict[str, str],  # committed too, so the web process finds them
) -> str:
    return shared_urls[1]


# The Open Inference Protocol's routes (/v2) run on their own, fewer examples each (9 small
# operations): JSON Schema cannot say that a tensor's shape matches its data, so a schema-valid
# inference may rightly be refused with 400; like the import, they run without the positive-data
# check (the GETs take only path parameters, answered 404 for a name that is not served).
V2_PATHS = "^/v2"
V2_RUN = (
    "--include-path-regex",
    V2_PATHS,
    "--exclude-checks",
    "positive_data_acceptance",
    "--phases",
    "examples,coverage,fuzzing",
)
V2_MAX_EXAMPLES = 10
ALGORITHM_RUNS = {"api": ("--exclude-path-regex", V2_PATHS), "v2": V2_RUN}


def test_algorithm_service_behaves_as_its_schema_says(
    algorithm_url: str, service_headers: dict[str, str], hypothesis_dir: Path, tmp_path: Path
) -> None:
    """The full run, as web calls it: with the service token.

    The two runs go side by side: /v2 only predicts and reads, it never meets the jobs the
    other run queues."""
    runs = run_side_by_side(
        {
            name: functools.partial(
                run_schemathesis,
                f"{algorithm_url}/openapi.json",
                hypothesis_dir=hypothesis_dir,
                headers=service_headers,
                max_examples=ALGORITHM_MAX_EXAMPLES if name == "api" else V2_MAX_EXAMPLES,
                report_dir=tmp_path / name,
                options=options,
            )
            for name, options in ALGORITHM_RUNS.items()
        }
    )
    for run in runs.values():
        assert run.exit_code == 0, run.failure_report()
    assert runs["api"].requests >= MIN_REQUESTS, runs["api"].summary()
    assert runs["v2"].requests > 0, runs["v2"].summary()


def test_algorithm_service_refuses_a_caller_without_the_service_token(
    algorithm_url: str, hypothesis_dir: Path, tmp_path: Path
) -> None:
    """Every operation but the public ones answers 401 as declared (and ignored_auth holds)."""
    run = run_schemathesis(
        f"{algorithm_url}/openapi.json",
        hypothesis_dir=hypothesis_dir,
        headers={},
        max_examples=SHORT_RUN_MAX_EXAMPLES,
        report_dir=tmp_path / "report",
        phases=SHORT_RUN_PHASES,
        options=SHORT_RUN_OPTIONS,
    )
    assert run.exit_code == 0, run.failure_report()
    assert run.requests > 0, run.summary()


# A CSV or NDJSON body is a string to JSON Schema, which cannot say which strings are valid rows:
# a schema-valid string may hold a bad line, which the import rightly refuses with 400. So the
# import is fuzzed in a run of its own without the positive-data check (this Schemathesis applies
# per-operation check settings to other operations too, so a config file cannot single it out).
IMPORT_PATH = "/api/data/import/"
WEB_RUNS = {
    "api": ("--exclude-path", IMPORT_PATH, "--exclude-path-regex", V2_PATHS),
    "v2": V2_RUN,
    # One operation has no links to follow: the stateful phase has nothing to do there.
    "import": (
        "--include-path",
        IMPORT_PATH,
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing",
    ),
}


def test_web_service_behaves_as_its_schema_says(
    web_url: str, tokens: dict[str, str], hypothesis_dir: Path, tmp_path: Path
) -> None:
    """The full run, as admin: every operation answers past the token check.

    /v2 goes beside the data API's run (it reads no row); the import still runs after it, on
    its own, as its rows would otherwise land in the middle of the other run's stateful phase.
    """

    def run(name: str) -> FuzzRun:
        return run_schemathesis(
            f"{web_url}/api/schema/?format=json",
            hypothesis_dir=hypothesis_dir,
            headers=bearer(tokens["admin"]),
            max_examples=V2_MAX_EXAMPLES if name == "v2" else WEB_MAX_EXAMPLES,
            report_dir=tmp_path / name,
            options=WEB_RUNS[name],
            fewer_examples={NAMED_ROUTES: NAMED_MAX_EXAMPLES},
        )

    runs = [
        *run_side_by_side({name: functools.partial(run, name) for name in ("api", "v2")}).values(),
        run("import"),
    ]
    for finished in runs:
        assert finished.exit_code == 0, finished.failure_report()
    assert sum(r.requests for r in runs) >= MIN_REQUESTS, [r.summary() for r in runs]


# Where 401s, 403s and the ignored_auth check (a declared token that is not enforced) matter.
# One web service for all three callers.
SHORT_RUN_CALLERS = ["reader", "editor", None]


def test_web_refuses_what_each_role_and_no_token_may_not_do(
    web_url: str, tokens: dict[str, str], hypothesis_dir: Path, tmp_path: Path
) -> None:
    runs = run_side_by_side(
        {
            role or "anonymous": functools.partial(
                run_schemathesis,
                f"{web_url}/api/schema/?format=json",
                hypothesis_dir=hypothesis_dir,
                headers=bearer(tokens[role]) if role else {},
                max_examples=SHORT_RUN_MAX_EXAMPLES,
                report_dir=tmp_path / (role or "anonymous"),
                phases=SHORT_RUN_PHASES,
                options=(*WEB_RUNS["api"], *SHORT_RUN_OPTIONS),
            )
            for role in SHORT_RUN_CALLERS
        }
    )
    for name, run in runs.items():
        assert run.exit_code == 0, f"as {name}: {run.failure_report()}"
        assert run.requests > 0, f"as {name}: {run.summary()}"
