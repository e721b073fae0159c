"""Turn the runs of `make bench` into the spec's ratios, target checks, a table and markdown.

Every ratio is computed per round (runs minutes apart at most) and then the median is taken
over the rounds, as the spec's targets ask.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.hotswap import HotSwapResult
from loadtests.wrk import WrkResult

SECTION_TITLE = "## Prediction throughput"
SCENARIO_TITLES = {
    "hello": "(b) Flask hello `async def`, same pool (ceiling)",
    "algorithm": "(a) algorithm `POST /predict`",
    "baseline": "(c) B: sync Flask view, gunicorn 2 sync workers",
    "batch": "(f) algorithm `/predict`, 1 000 texts per body",
    "web_ceiling": "(e) Django async constant view, web's pool (ceiling)",
    "web": "(d) web `POST /api/predict/`",
}


@dataclass(frozen=True)
class Run:
    scenario: str
    round: int
    result: WrkResult
    texts_per_request: int = 1

    @property
    def rps(self) -> float:
        return self.result.ok_per_second

    @property
    def texts_per_second(self) -> float:
        return self.rps * self.texts_per_request


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    target: str
    passed: bool | None  # None: could not be measured in this invocation


def runs_of(runs: Sequence[Run], scenario: str) -> list[Run]:
    return [run for run in runs if run.scenario == scenario]


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def median_ratio(runs: Sequence[Run], top: str, bottom: str) -> float | None:
    """Median over rounds of rps(top) / rps(bottom), pairing runs of the same round."""
    bottoms = {run.round: run.rps for run in runs_of(runs, bottom)}
    ratios = [run.rps / bottoms[run.round] for run in runs_of(runs, top) if bottoms.get(run.round)]
    return median_or_none(ratios)


def median_p99_ms(runs: Sequence[Run], scenario: str) -> float | None:
    return median_or_none([run.result.p99_us / 1000 for run in runs_of(runs, scenario)])


def within_of_median(runs: Sequence[Run], scenario: str, share: float) -> bool | None:
    """Whether every run's requests/s lies within `share` of the scenario's median."""
    values = [run.rps for run in runs_of(runs, scenario)]
    median = median_or_none(values)
    if not median:
        return None
    return all(abs(value - median) <= share * median for value in values)


def _fmt(value: float | None, pattern: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, pattern) + unit


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _below(value: float | None, target: float) -> bool | None:
    return None if value is None else value < target


def checks(runs: Sequence[Run], hotswap: HotSwapResult | None) -> list[Check]:
    """The spec's targets, each with the measured value and whether it holds."""
    vs_b = median_ratio(runs, "algorithm", "baseline")
    vs_hello = median_ratio(runs, "algorithm", "hello")
    algo_p99 = median_p99_ms(runs, "algorithm")
    stable = within_of_median(runs, "algorithm", 0.20)
    batch = median_or_none([run.texts_per_second for run in runs_of(runs, "batch")])
    vs_web_ceiling = median_ratio(runs, "web", "web_ceiling")
    web_p99 = median_p99_ms(runs, "web")
    web_vs_algo = median_ratio(runs, "web", "algorithm")
    errors = sum(run.result.errors for run in runs if run.scenario in ("algorithm", "batch", "web"))
    result = [
        Check(
            "algorithm / B (requests/s)", _fmt(vs_b, ".2f", "x"), ">= 2.0x", _at_least(vs_b, 2.0)
        ),
        Check(
            "algorithm / Flask hello ceiling",
            _fmt(vs_hello, ".2f", "x"),
            ">= 0.9x",
            _at_least(vs_hello, 0.9),
        ),
        Check(
            "algorithm p99 (median of runs)",
            _fmt(algo_p99, ".1f", " ms"),
            "< 100 ms",
            _below(algo_p99, 100.0),
        ),
        Check("every algorithm run within 20% of the median", _yes_no(stable), "yes", stable),
        Check("batch texts/s (median)", _fmt(batch, ",.0f"), ">= 15,000", _at_least(batch, 15_000)),
        Check(
            "web / web ceiling",
            _fmt(vs_web_ceiling, ".2f", "x"),
            ">= 0.7x",
            _at_least(vs_web_ceiling, 0.7),
        ),
        Check(
            "web p99 (median of runs)",
            _fmt(web_p99, ".1f", " ms"),
            "< 150 ms",
            _below(web_p99, 150.0),
        ),
        Check("web / algorithm direct", _fmt(web_vs_algo, ".2f", "x"), "(reported)", None),
        Check("failed requests, algorithm + batch + web runs", str(errors), "0", errors == 0),
    ]
    if hotswap is not None:
        swap = hotswap.swap_seconds
        result += [
            Check("hot swap: failed requests", str(hotswap.failures), "0", hotswap.failures == 0),
            Check(
                "hot swap: new version answers after",
                _fmt(swap, ".2f", " s"),
                "< 2 s",
                _below(swap, 2.0),
            ),
        ]
    return result


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def _verdict(passed: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[passed]


def runs_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        r = run.result
        texts = f"{run.texts_per_second:,.0f}" if run.texts_per_request > 1 else ""
        rows.append(
            [
                SCENARIO_TITLES[run.scenario],
                str(run.round),
                f"{run.rps:,.0f}",
                texts,
                f"{r.p50_us / 1000:.1f}",
                f"{r.p99_us / 1000:.1f}",
                str(r.errors),
            ]
        )
    return rows


def median_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for scenario, title in SCENARIO_TITLES.items():
        mine = runs_of(runs, scenario)
        if not mine:
            continue
        rps = statistics.median(run.rps for run in mine)
        texts = statistics.median(run.texts_per_second for run in mine)
        rows.append(
            [
                title,
                f"{rps:,.0f}",
                f"{texts:,.0f}" if mine[0].texts_per_request > 1 else "",
                f"{statistics.median(run.result.p50_us for run in mine) / 1000:.1f}",
                f"{statistics.median(run.result.p99_us for run in mine) / 1000:.1f}",
                f"{min(run.rps for run in mine):,.0f}-{max(run.rps for run in mine):,.0f}",
                str(sum(run.result.errors for run in mine)),
            ]
        )
    return rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [list(header), *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


RUN_HEADER = ["scenario", "round", "requests/s", "texts/s", "p50 ms", "p99 ms", "errors"]
MEDIAN_HEADER = ["scenario", "requests/s", "texts/s", "p50 ms", "p99 ms", "range req/s", "errors"]
CHECK_HEADER = ["target", "measured", "spec", "verdict"]


def check_rows(found: Sequence[Check]) -> list[list[str]]:
    return [[c.name, c.value, c.target, _verdict(c.passed)] for c in found]


def hotswap_lines(hotswap: HotSwapResult) -> list[str]:
    return [
        f"{hotswap.requests} requests on 64 connections ({hotswap.answers_per_second:,.0f}/s, "
        "httpx client reading every body), "
        f"{hotswap.failures} failed; published {hotswap.new_version} over "
        f"{hotswap.old_version} in {hotswap.publish_seconds:.2f} s; first answer by the new "
        f"version {_fmt(hotswap.first_new_after_s, '.2f')} s after publication, last by the old "
        f"one {_fmt(hotswap.last_old_after_s, '.2f')} s after.",
        *[f"failure: {example}" for example in hotswap.failure_examples],
    ]


def replace_section(document: str, section: str) -> str:
    """Put `section` in place of the existing `## Prediction throughput` one, or append it."""
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(document):
        return (
            pattern.sub(lambda _: section.rstrip("\n") + "\n\n", document, count=1).rstrip() + "\n"
        )
    return document.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"


def write_section(path: Path, section: str) -> None:
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(existing, section))
