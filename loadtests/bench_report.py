"""Turn the runs of `make bench` into the spec's target checks and markdown tables.

Every ratio is computed per round (the two runs are minutes apart at most) and the median is
taken over the rounds, as the spec's targets ask. The checks are a table: what is measured, how,
and the bound the spec sets.
"""

from __future__ import annotations

import operator
import os
import platform
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench_servers import BY_NAME, Scenario
from loadtests.cold_start import ColdStartResult
from loadtests.hotswap import HotSwapResult
from loadtests.wrk import WrkResult


@dataclass(frozen=True)
class Run:
    scenario: Scenario
    round: int
    result: WrkResult

    @property
    def rps(self) -> float:
        return self.result.ok_per_second

    @property
    def texts_per_second(self) -> float:
        return self.rps * self.scenario.texts_per_request


@dataclass(frozen=True)
class Results:
    """Every run of one invocation, and the hot swap and cold named models if they ran."""

    runs: Sequence[Run]
    hotswap: HotSwapResult | None = None
    cold: ColdStartResult | None = None

    def of(self, name: str) -> list[Run]:
        return [run for run in self.runs if run.scenario.name == name]

    def median(self, name: str, value: Callable[[Run], float]) -> float | None:
        values = [value(run) for run in self.of(name)]
        return statistics.median(values) if values else None

    def ratio(self, top: str, bottom: str) -> float | None:
        """Median over rounds of requests/s of `top` / `bottom`, pairing runs of one round."""
        bottoms = {run.round: run.rps for run in self.of(bottom)}
        ratios = [run.rps / bottoms[run.round] for run in self.of(top) if bottoms.get(run.round)]
        return statistics.median(ratios) if ratios else None

    def spread(self, name: str) -> float | None:
        """The largest distance of one run's requests/s from their median, as a share of it."""
        median = self.median(name, lambda run: run.rps)
        if not median:
            return None
        return max(abs(run.rps - median) for run in self.of(name)) / median

    def measured_errors(self) -> float | None:
        """Failed requests of the service's own runs (algorithm, top_k, shadow, batch, web)."""
        names = ["algorithm", "top_k", "shadow_0.1", "shadow_1", "batch", "web", "web_unguarded"]
        names += ["web_pinned", "data_list", "data_row", "algorithm_named", "web_named"]
        runs = [run for name in names for run in self.of(name)]
        return sum(run.result.errors for run in runs) if runs else None

    def swap(self, attribute: str) -> float | None:
        """A figure of the hot swap, if it ran."""
        return None if self.hotswap is None else getattr(self.hotswap, attribute)


def p99_ms(run: Run) -> float:
    return run.result.p99_us / 1000


def texts_s(run: Run) -> float:
    return run.texts_per_second


@dataclass(frozen=True)
class Check:
    """One spec target: `measure(results) <op> limit`, or only reported when `op` is None."""

    name: str
    measure: Callable[[Results], float | None]
    op: str | None
    limit: float
    unit: str  # format of the value and the limit

    def row(self, results: Results) -> list[str]:
        value = self.measure(results)
        shown = "n/a" if value is None else self.unit.format(value)
        if self.op is None:
            return [self.name, shown, "(reported)", "-"]
        verdict = "-" if value is None else ("met" if OPS[self.op](value, self.limit) else "MISSED")
        return [self.name, shown, f"{self.op} {self.unit.format(self.limit)}", verdict]


OPS = {">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}
RATIO, MS, COUNT, SECONDS, SHARE = "{:.2f}x", "{:.1f} ms", "{:,.0f}", "{:.2f} s", "{:.0%}"
CHECKS = (
    Check("algorithm / B (requests/s)", lambda r: r.ratio("algorithm", "baseline"), ">=", 3, RATIO),
    Check("algorithm / hello ceiling", lambda r: r.ratio("algorithm", "hello"), ">=", 0.9, RATIO),
    Check("algorithm p99 (median of runs)", lambda r: r.median("algorithm", p99_ms), "<", 50, MS),
    Check("algorithm runs: most off the median", lambda r: r.spread("algorithm"), "<=", 0.2, SHARE),
    Check(
        "algorithm: observability on / off",
        lambda r: r.ratio("algorithm", "algorithm_off"),
        ">=",
        0.95,
        RATIO,
    ),
    Check("top_k / plain (requests/s)", lambda r: r.ratio("top_k", "algorithm"), None, 0, RATIO),
    Check(
        "shadow 0.1 / plain (requests/s)",
        lambda r: r.ratio("shadow_0.1", "algorithm"),
        None,
        0,
        RATIO,
    ),
    Check(
        "shadow 1 / plain (requests/s)", lambda r: r.ratio("shadow_1", "algorithm"), None, 0, RATIO
    ),
    Check("batch texts/s (median)", lambda r: r.median("batch", texts_s), ">=", 150_000, COUNT),
    Check(
        "v2 infer / native predict (one text)",
        lambda r: r.ratio("v2", "algorithm"),
        ">=",
        0.9,
        RATIO,
    ),
    Check(
        "v2 infer / native batch (1 000 texts)",
        lambda r: r.ratio("v2_batch", "batch"),
        ">=",
        0.9,
        RATIO,
    ),
    Check(
        "web v2 infer / web predict (one text)",
        lambda r: r.ratio("web_v2", "web"),
        ">=",
        0.9,
        RATIO,
    ),
    Check(
        "algorithm / its constant route, guards on (b')",
        lambda r: r.ratio("algorithm", "algorithm_hello"),
        None,
        0,
        RATIO,
    ),
    Check("web / algorithm direct", lambda r: r.ratio("web", "algorithm"), ">=", 0.6, RATIO),
    Check("web / web ceiling", lambda r: r.ratio("web", "web_ceiling"), ">=", 0.85, RATIO),
    Check("web p99 (median of runs)", lambda r: r.median("web", p99_ms), "<", 60, MS),
    Check("web: observability on / off", lambda r: r.ratio("web", "web_off"), ">=", 0.95, RATIO),
    Check(
        "web: access line on / off",
        lambda r: r.ratio("web", "web_no_access_line"),
        None,
        0,
        RATIO,
    ),
    # Each lever of web's predict path against the same path without it (same round).
    Check(
        "web before (Django's handler, Hypercorn) / algorithm direct",
        lambda r: r.ratio("web_stock_handler", "algorithm"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web, lever 1 (pooled threads, signals inline) / algorithm direct",
        lambda r: r.ratio("web_hypercorn", "algorithm"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web, levers 1+2 (and uvicorn) / algorithm direct",
        lambda r: r.ratio("web_django_route", "algorithm"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web on Granian (its own workers) / algorithm direct",
        lambda r: r.ratio("web_granian", "algorithm"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web / algorithm direct, each on its own core",
        lambda r: r.ratio("web_pinned", "algorithm_pinned"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web / web ceiling, the Flask hello as upstream (the hop's least cost)",
        lambda r: r.ratio("web_hello_upstream", "web_ceiling"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web / web ceiling, both on core 0 (the algorithm service on core 1)",
        lambda r: r.ratio("web_pinned", "web_ceiling_pinned"),
        None,
        0,
        RATIO,
    ),
    Check(
        "data API first page / web ceiling",
        lambda r: r.ratio("data_list", "web_ceiling"),
        None,
        0,
        RATIO,
    ),
    Check(
        "data API first page, after / before",
        lambda r: r.ratio("data_list", "data_list_before"),
        None,
        0,
        RATIO,
    ),
    Check(
        "data API one row, after / before",
        lambda r: r.ratio("data_row", "data_row_before"),
        None,
        0,
        RATIO,
    ),
    Check(
        "data API one row / web ceiling",
        lambda r: r.ratio("data_row", "web_ceiling"),
        None,
        0,
        RATIO,
    ),
    Check(
        "web, auth and rate limits on / off",
        lambda r: r.ratio("web", "web_unguarded"),
        ">=",
        0.95,
        RATIO,
    ),
    Check(
        "web p99, auth and rate limits off",
        lambda r: r.median("web_unguarded", p99_ms),
        None,
        0,
        MS,
    ),
    # Named models: the same trained model under another name, warm, against `default`.
    Check(
        "algorithm: warm named model / default",
        lambda r: r.ratio("algorithm_named", "algorithm"),
        ">=",
        0.95,
        RATIO,
    ),
    Check(
        "web: warm named model / default",
        lambda r: r.ratio("web_named", "web"),
        ">=",
        0.95,
        RATIO,
    ),
    Check(
        "cold named model: first answer (median of names)",
        lambda r: None if r.cold is None else r.cold.first_answer_s,
        None,
        0,
        SECONDS,
    ),
    Check("failed requests, every run but ceilings and B", Results.measured_errors, "==", 0, COUNT),
    Check("hot swap: failed requests", lambda r: r.swap("failures"), "==", 0, COUNT),
    Check("hot swap: new version answers after", lambda r: r.swap("swap_seconds"), "<", 2, SECONDS),
)
CHECK_HEADER = ["target", "measured", "spec", "verdict"]
RUN_HEADER = ["scenario", "requests/s", "texts/s", "p50 ms", "p99 ms", "errors"]


def check_rows(results: Results) -> list[list[str]]:
    return [check.row(results) for check in CHECKS]


def run_row(title: str, runs: Sequence[Run]) -> list[str]:
    """Medians of `runs` (one run: its own figures); errors are summed."""
    batch = runs[0].scenario.texts_per_request > 1
    texts = statistics.median(run.texts_per_second for run in runs)
    return [
        title,
        f"{statistics.median(run.rps for run in runs):,.0f}",
        f"{texts:,.0f}" if batch else "",
        f"{statistics.median(run.result.p50_us for run in runs) / 1000:.1f}",
        f"{statistics.median(run.result.p99_us for run in runs) / 1000:.1f}",
        str(sum(run.result.errors for run in runs)),
    ]


def median_rows(results: Results) -> list[list[str]]:
    found = [(name, results.of(name)) for name in BY_NAME]
    return [run_row(BY_NAME[name].title, runs) for name, runs in found if runs]


def every_run_row(run: Run) -> list[str]:
    return run_row(f"{run.scenario.title}, round {run.round}", [run])


def every_run_rows(results: Results) -> list[list[str]]:
    return [every_run_row(run) for run in results.runs]


def markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    return "\n".join(lines + [markdown_row(row) for row in rows])


def hotswap_text(hotswap: HotSwapResult) -> str:
    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    text = (
        f"{hotswap.requests} requests on 64 connections ({hotswap.answers_per_second:,.0f}/s, "
        f"httpx client reading every body), {hotswap.failures} failed; published "
        f"{hotswap.new_version} over {hotswap.old_version} in {hotswap.publish_seconds:.2f} s; "
        f"first answer by the new version {seconds(hotswap.first_new_after_s)} s after "
        f"publication, last by the old one {seconds(hotswap.last_old_after_s)} s after."
    )
    return "\n".join([text, *(f"failure: {example}" for example in hotswap.failure_examples)])


def machine_description() -> str:
    """Cores, CPU model, memory, kernel and Python, for the benchmark record."""
    cpuinfo, meminfo = Path("/proc/cpuinfo").read_text(), Path("/proc/meminfo").read_text()
    cpu = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    mem_kib = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)
    return (
        f"{len(os.sched_getaffinity(0))} cores (nproc), {cpu[1] if cpu else 'unknown CPU'}, "
        f"{int(mem_kib[1]) / 2**20 if mem_kib else 0:.1f} GiB memory, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def write_section(path: Path, title: str, section: str) -> None:
    """Put `section` in place of the one headed `title` in `path` (up to the next `## `)."""
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", document, count=1)
    else:
        document = document.rstrip("\n") + "\n\n" + section
    path.write_text(document.rstrip("\n") + "\n")
