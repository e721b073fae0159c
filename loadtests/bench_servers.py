"""The servers `make bench` measures, as a table, and how one is started alone.

Every server is a child from `core.process.spawn` (own process group, own log file, dies with
the bench) on a free 127.0.0.1 port, stopped by its pid with `stop_children`. A server counts as
up once the measured request itself answers 2xx, so a scenario never measures start-up.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from core.harness.scratch import free_port
from core.process import Child, spawn, stop_children
from loadtests import bench_data

HOST = "127.0.0.1"
WORKERS = "2"
START_TIMEOUT_SECONDS = 90.0
NATIVE_PROBE = b'{"text": "a Python library"}'
# The warm named model of the named scenarios: the same trained model as `default`, published
# again as a version of this name, so a ratio to `default` measures the cost of the name alone.
NAMED_MODEL = "bench-named"


def pool(app_path: str) -> tuple[str, ...]:
    """The Hypercorn pool that `python -m algorithm` and `python -m web` use, for another app."""
    return ("-m", "core.pool", app_path, "--host", HOST, "--port", "{port}", "--workers", WORKERS)


ALGORITHM_ENV = {"ALGORITHM_HOST": HOST, "ALGORITHM_PORT": "{port}", "ALGORITHM_WORKERS": WORKERS}
WEB_ENV = {
    "WEB_HOST": HOST,
    "WEB_PORT": "{port}",
    "WEB_WORKERS": WORKERS,
    "ALGORITHM_URL": "{upstream}",
}
BENCH_RATE_LIMITS = ("RATE_LIMIT_PREDICT_PER_MINUTE", "RATE_LIMIT_READS_PER_MINUTE")
# The data API never calls the algorithm service; nothing listens on port 9 (discard).
DATA_ENV = {**WEB_ENV, "ALGORITHM_URL": "http://127.0.0.1:9"}
GUNICORN = ("-m", "gunicorn", "--workers", WORKERS, "--worker-class", "sync", "--no-control-socket")


@dataclass(frozen=True)
class Scenario:
    """One server under load: `python <argv>` ({port}, {upstream} filled in), POSTed at `path`."""

    name: str
    title: str
    argv: tuple[str, ...]
    path: str
    env: Mapping[str, str] = field(default_factory=dict)
    upstream: str | None = None  # the scenario whose server this one calls (started first)
    texts_per_request: int = 1
    top_k: int | None = None  # sent in every body: the answers carry scores
    # The body's protocol: the native `{"text": ...}` / `{"texts": [...]}`, or "v2" (an Open
    # Inference Protocol request for `label`, with the same texts).
    protocol: str = "native"
    # Whose bearer token every request carries: "service" (as web calls the algorithm service)
    # or "client" (a user of web's API).
    caller: str = "service"
    # Another checkout to run the server from (loadtests/compare_refs.py), instead of this one.
    checkout: Path | None = None
    # "GET": the path itself is fetched over and over (the bodies are not sent).
    method: str = "POST"
    # The cores the server may run on (`taskset -c`), or None: any.
    cpus: str | None = None
    # The model every body names (`"model": ...`), or None: none, which means `default`.
    model: str | None = None

    @property
    def bodies(self) -> tuple[int, int | None, str, str | None]:
        """Which bodies it sends: scenarios with the same key send the same texts."""
        return self.texts_per_request, self.top_k, self.protocol, self.model


# One round runs them in this order; the letters are the spec's.
SCENARIOS = (
    Scenario(
        "hello",
        "(b) Flask hello `async def`, same pool (ceiling)",
        pool("loadtests.servers.flask_hello:app"),
        "/predict",
    ),
    # The same ceiling through the service's own request handling (token, limits, request ids,
    # metrics, access line): what `/predict` adds to it is the prediction's own work.
    Scenario(
        "algorithm_hello",
        "(b') a constant `POST /hello` inside the algorithm service (its guards on), same pool",
        pool("loadtests.servers.algorithm_hello:app"),
        "/hello",
        ALGORITHM_ENV,
    ),
    Scenario(
        "algorithm", "(a) algorithm `POST /predict`", ("-m", "algorithm"), "/predict", ALGORITHM_ENV
    ),
    Scenario(
        "algorithm_off",
        "(a) without request ids and request metrics",
        pool("loadtests.servers.algorithm_unobserved:app"),
        "/predict",
    ),
    Scenario(
        "top_k",
        'algorithm `POST /predict` with `"top_k": 3` (scores)',
        ("-m", "algorithm"),
        "/predict",
        ALGORITHM_ENV,
        top_k=3,
    ),
    # Shadow scoring: the bench announces a challenger, so (a) is the same service at fraction 0.
    Scenario(
        "shadow_0.1",
        "algorithm `/predict`, challenger shadows 10 % (`SHADOW_FRACTION=0.1`)",
        ("-m", "algorithm"),
        "/predict",
        {**ALGORITHM_ENV, "SHADOW_FRACTION": "0.1"},
    ),
    Scenario(
        "shadow_1",
        "algorithm `/predict`, challenger shadows every text (`SHADOW_FRACTION=1`)",
        ("-m", "algorithm"),
        "/predict",
        {**ALGORITHM_ENV, "SHADOW_FRACTION": "1"},
    ),
    Scenario(
        "baseline",
        "(c) B: sync Flask view, gunicorn 2 sync workers",
        (*GUNICORN, "--bind", f"{HOST}:{{port}}", "loadtests.servers.gunicorn_baseline:app"),
        "/predict",
    ),
    Scenario(
        "batch",
        "(f) algorithm `/predict`, 1 000 texts per body",
        ("-m", "algorithm"),
        "/predict",
        ALGORITHM_ENV,
        texts_per_request=1_000,
    ),
    # The Open Inference Protocol (/v2) beside the native predict, same texts.
    Scenario(
        "v2",
        "algorithm `POST /v2/models/default/infer` (Open Inference Protocol)",
        ("-m", "algorithm"),
        "/v2/models/default/infer",
        ALGORITHM_ENV,
        protocol="v2",
    ),
    Scenario(
        "v2_batch",
        "algorithm `/v2/models/default/infer`, 1 000 texts per body",
        ("-m", "algorithm"),
        "/v2/models/default/infer",
        ALGORITHM_ENV,
        texts_per_request=1_000,
        protocol="v2",
    ),
    Scenario(
        "web_ceiling",
        "(e) Django async constant view, web's pool (ceiling)",
        # The server `python -m web` runs by default (WEB_SERVER).
        (*pool("loadtests.servers.django_ceiling:application"), "--server", "uvicorn"),
        "/api/predict/",
        caller="client",  # same middleware as web, token check included
    ),
    Scenario(
        "web_unguarded",
        "(d') web `POST /api/predict/`, authentication and rate limits off",
        ("-m", "web"),
        "/api/predict/",
        {**WEB_ENV, "DJANGO_SETTINGS_MODULE": "loadtests.servers.web_unguarded_settings"},
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web",
        "(d) web `POST /api/predict/`",
        ("-m", "web"),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
    ),
    # The levers of web's predict path, one at a time (docs/benchmarks.md, "Web at the
    # algorithm service's speed"): Django's own handler, and other servers on the same app.
    Scenario(
        "web_stock_handler",
        "(d) before: Django's own handler (a thread started per request), Hypercorn",
        pool("loadtests.servers.web_stock_handler:application"),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web_hypercorn",
        "(d) lever 1: web's handler, Hypercorn, Django's URL routing",
        ("-m", "web"),
        "/api/predict/",
        {**WEB_ENV, "WEB_SERVER": "hypercorn", "WEB_FAST_PREDICT_ROUTE": "false"},
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web_granian",
        "(d) served by Granian (its own 2 workers, uvloop), not the pool",
        (
            *("-m", "granian", "--interface", "asgi", "--host", HOST, "--port", "{port}"),
            *("--workers", WORKERS, "--loop", "uvloop", "--no-access-log"),
            "web.asgi:application",
        ),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web_uvicorn_cli",
        "(d) served by uvicorn's own 2 workers (uvloop, httptools), not the pool",
        (
            *("-m", "uvicorn", "--host", HOST, "--port", "{port}", "--workers", WORKERS),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on"),
            "web.asgi:application",
        ),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web_django_route",
        "(d) levers 1+2: web's handler, uvicorn, Django's URL routing",
        ("-m", "web"),
        "/api/predict/",
        {**WEB_ENV, "WEB_FAST_PREDICT_ROUTE": "false"},
        upstream="algorithm",
        caller="client",
    ),
    # The least a hop can cost web's predictions on shared cores: its upstream is the algorithm
    # service's bare ceiling (the Flask hello on the same pool), answering each coalesced call
    # with constant labels: no token check, limits, metrics or model on the far side.
    Scenario(
        "hello_labels",
        "(b) Flask hello answering a whole call with constant labels, same pool",
        pool("loadtests.servers.flask_hello_labels:app"),
        "/predict",
    ),
    Scenario(
        "web_hello_upstream",
        "(d) web `POST /api/predict/` with the Flask hello as its upstream",
        ("-m", "web"),
        "/api/predict/",
        WEB_ENV,
        upstream="hello_labels",
        caller="client",
    ),
    # Web's own cost apart from core sharing: each service on a core of its own.
    Scenario(
        "algorithm_pinned",
        "(a) algorithm `POST /predict`, alone on core 1 (`taskset -c 1`)",
        ("-m", "algorithm"),
        "/predict",
        ALGORITHM_ENV,
        cpus="1",
    ),
    Scenario(
        "web_pinned",
        "(d) web on core 0, the algorithm service on core 1 (`taskset`)",
        ("-m", "web"),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm_pinned",
        caller="client",
        cpus="0",
    ),
    # Web's ceiling on web_pinned's core: web's own cost against it, apart from core sharing.
    Scenario(
        "web_ceiling_pinned",
        "(e) Django async constant view, web's pool, on core 0 (`taskset -c 0`)",
        (*pool("loadtests.servers.django_ceiling:application"), "--server", "uvicorn"),
        "/api/predict/",
        caller="client",
        cpus="0",
    ),
    # The data API's reads through the same server and handler (rows seeded by the bench).
    Scenario(
        "data_list",
        "web `GET /api/data/` (first page of 2 000 rows)",
        ("-m", "web"),
        "/api/data/",
        DATA_ENV,
        caller="client",
        method="GET",
    ),
    Scenario(
        "data_row",
        "web `GET /api/data/{id}/` (one row)",
        ("-m", "web"),
        "/api/data/{row}/",
        DATA_ENV,
        caller="client",
        method="GET",
    ),
    Scenario(
        "data_list_before",
        "web `GET /api/data/`, before: Django's own handler, Hypercorn",
        pool("loadtests.servers.web_stock_handler:application"),
        "/api/data/",
        DATA_ENV,
        caller="client",
        method="GET",
    ),
    Scenario(
        "data_row_before",
        "web `GET /api/data/{id}/`, before: Django's own handler, Hypercorn",
        pool("loadtests.servers.web_stock_handler:application"),
        "/api/data/{row}/",
        DATA_ENV,
        caller="client",
        method="GET",
    ),
    Scenario(
        "web_v2",
        "web `POST /v2/models/default/infer` (Open Inference Protocol)",
        ("-m", "web"),
        "/v2/models/default/infer",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
        protocol="v2",
    ),
    Scenario(
        "web_off",
        "(d) without request ids, request metrics and access log",
        ("-m", "web"),
        "/api/predict/",
        {**WEB_ENV, "DJANGO_SETTINGS_MODULE": "loadtests.servers.web_unobserved_settings"},
        upstream="algorithm",
        caller="client",
    ),
    Scenario(
        "web_no_access_line",
        "(d) without the access line (ACCESS_LOG=false)",
        ("-m", "web"),
        "/api/predict/",
        {**WEB_ENV, "ACCESS_LOG": "false"},
        upstream="algorithm",
        caller="client",
    ),
    # Named models: a warm named model against `default`, same texts, in the same rounds.
    Scenario(
        "algorithm_named",
        f'(a) algorithm `POST /predict` with `"model": "{NAMED_MODEL}"` (warm named model)',
        ("-m", "algorithm"),
        "/predict",
        ALGORITHM_ENV,
        model=NAMED_MODEL,
    ),
    Scenario(
        "web_named",
        f'(d) web `POST /api/predict/` with `"model": "{NAMED_MODEL}"` (warm named model)',
        ("-m", "web"),
        "/api/predict/",
        WEB_ENV,
        upstream="algorithm",
        caller="client",
        model=NAMED_MODEL,
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@dataclass
class BenchEnv:
    """Where the bench keeps its state, and how every server reaches Redis, PostgreSQL, models."""

    work_dir: Path
    secret_key: str
    service_token: str  # the algorithm service accepts it, web sends it
    redis_url: str = ""
    database_url: str = ""
    api_token: str = ""  # what the load generator presents to web: a reader token, once migrated
    started: int = 0  # servers started so far: numbers the log files in start order
    data_row_id: int = 0  # a row of the data API's table, once seeded (`{row}` in a path)

    @property
    def model_root(self) -> Path:
        return self.work_dir / "models"

    def log_path(self, name: str) -> Path:
        self.started += 1
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        return self.work_dir / "logs" / f"{self.started:03d}-{name}.log"

    def service_env(self) -> dict[str, str]:
        """The environment of every server: nothing inherited that could point elsewhere."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
        env = {name: value for name, value in os.environ.items() if name in keep}
        env.update(
            VAR_DIR=str(self.work_dir / "var"),
            MODEL_DIR=str(self.model_root),
            REDIS_URL=self.redis_url,
            DJANGO_SECRET_KEY=self.secret_key,
            ALGORITHM_TOKEN=self.service_token,
            ALGORITHM_TOKENS=self.service_token,
            MODEL_SIGNING_KEY=bench_data.SIGNING_KEY,
            PYTHONUNBUFFERED="1",
            # Web's rate limits stay on, so their cost is in every run, but never bind: one
            # token sends every request of the bench, tens of thousands a minute. A bound one
            # would answer 429s, cheaper than the work measured (counted as errors if it did).
            **dict.fromkeys(BENCH_RATE_LIMITS, str(10**9)),
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env

    def headers(self, scenario: Scenario) -> dict[str, str]:
        """The headers every request of `scenario` carries besides the content type."""
        token = self.api_token if scenario.caller == "client" else self.service_token
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    """Running children (started in order) and where the last one answers."""

    children: list[Child]
    base_url: str
    path: str

    @property
    def url(self) -> str:
        """The URL that is measured."""
        return self.base_url + self.path

    def stop(self) -> None:
        stop_children(self.children)


class NotAnswering(Exception):
    """The server did not answer 2xx yet."""


def start_server(
    scenario: Scenario,
    env: BenchEnv,
    body: bytes,
    scenarios: Mapping[str, Scenario] = BY_NAME,
) -> Server:
    """Start the scenario's server (after its upstream) and wait until `body` gets a 2xx."""
    upstream = None
    if scenario.upstream:
        upstream_scenario = scenarios[scenario.upstream]
        # The upstream answers its own protocol: a /v2 body would not do for its /predict.
        probe = body if upstream_scenario.protocol == scenario.protocol else NATIVE_PROBE
        upstream = start_server(upstream_scenario, env, probe, scenarios)
    children, upstream_url = (upstream.children, upstream.base_url) if upstream else ([], "")
    port = free_port(HOST)
    log = env.log_path(scenario.name)
    argv = [sys.executable, *(arg.format(port=port) for arg in scenario.argv)]
    if scenario.cpus is not None:
        argv = ["taskset", "-c", scenario.cpus, *argv]
    extra = {
        key: value.format(port=port, upstream=upstream_url) for key, value in scenario.env.items()
    }
    if scenario.checkout is not None:  # `python -m` finds that checkout's packages first
        extra["PYTHONPATH"] = str(scenario.checkout)
    children.append(
        spawn(
            scenario.name,
            argv,
            env={**env.service_env(), **extra},
            log_path=log,
            cwd=scenario.checkout,
        )
    )
    server = Server(children, f"http://{HOST}:{port}", scenario.path.format(row=env.data_row_id))
    try:
        probe_body = None if scenario.method == "GET" else body
        wait_until_answers(server, probe_body, log, headers=env.headers(scenario))
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_answers(
    server: Server, body: bytes | None, log: Path, *, headers: dict[str, str]
) -> None:
    """POST `body` (None: GET) until it answers 2xx; fail at once if the server exits."""

    def probe() -> None:
        child = server.children[-1]
        if not child.running():
            raise RuntimeError(f"{child.name} exited ({child.popen.returncode}):\n{tail(log)}")
        request = urllib.request.Request(
            server.url, data=body, headers={"Content-Type": "application/json", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                pass  # urlopen raises HTTPError (an OSError) for anything outside 2xx/3xx
        except OSError as exc:
            raise NotAnswering(str(exc)) from exc

    retrying = Retrying(
        retry=retry_if_exception_type(NotAnswering),
        stop=stop_after_delay(START_TIMEOUT_SECONDS),
        wait=wait_fixed(0.2),
        reraise=True,
    )
    try:
        retrying(probe)
    except NotAnswering as exc:
        raise TimeoutError(f"{server.url} did not answer 2xx ({exc}):\n{tail(log)}") from exc


def tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
