"""Run `schemathesis run` against a live service and read back what it did.

The CLI is the one entry point that runs all four phases (examples, coverage, fuzzing,
stateful) with every check, and prints each finding with a curl command that reproduces it.
The run report gives the verdict, the HAR file every request actually sent.

The runs of a module share one Hypothesis directory, in which `build_unicode_tables` has
built the tables of Unicode characters that Hypothesis otherwise computes in each run's own
directory (its default is `.hypothesis` in the working directory, a fresh report directory
here): about 1.5 s of CPU per run, nine runs in tests/e2e/test_schema_fuzz.py. The tables only
list which characters exist and which encode as UTF-8; what a run generates does not depend on
them being cached (and with `--generation-database none` no example is carried over).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = 20261124
PHASES = "examples,coverage,fuzzing,stateful"
# A request slower than this is a finding (a hang), not something to wait out.
REQUEST_TIMEOUT_SECONDS = 30
RUN_TIMEOUT_SECONDS = 420  # web has 23 operations, the registry about half of them
REPORT_CHARS = 30_000


@dataclass(frozen=True)
class FuzzRun:
    """What one Schemathesis run found."""

    exit_code: int
    requests: int
    report_dir: Path
    output: str = field(repr=False)
    report: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        cases = self.report.get("test_cases", {})
        return (
            f"{self.requests} requests, {cases.get('unique_failures')} unique failures, "
            f"{self.report.get('running_time') or 0:.1f} s, exit code {self.exit_code}"
        )

    def failure_report(self) -> str:
        """The CLI's own account of the failures: check, operation, and a curl to reproduce."""
        heading = self.output.find(" FAILURES ")
        start = self.output.rfind("\n", 0, heading) + 1 if heading >= 0 else 0
        body = self.output[start:]
        if len(body) > REPORT_CHARS:
            body = body[:REPORT_CHARS] + f"\n[... cut: every failure is in {self.report_dir}]"
        errors = self.report.get("errors") or []  # e.g. a schema that failed to load
        titles = "".join(f"\nerror: {error.get('title')} x{error.get('count')}" for error in errors)
        return f"Schemathesis found problems ({self.summary()}):{titles}\n{body}"


# Builds the tables the runs' strings are drawn from: every Unicode category, and the characters
# UTF-8 encodes (Schemathesis' generation codec). Public API only: a strategy builds its tables
# when it is validated.
_BUILD_TABLES = "from hypothesis import strategies; strategies.characters(codec='utf-8').validate()"


def build_unicode_tables(hypothesis_dir: Path) -> subprocess.Popen[bytes]:
    """Start building Hypothesis' Unicode tables into `hypothesis_dir` (the caller waits)."""
    return subprocess.Popen(
        [sys.executable, "-c", _BUILD_TABLES],
        env={**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(hypothesis_dir)},
    )


def run_schemathesis(
    schema_url: str,
    *,
    hypothesis_dir: Path,
    headers: dict[str, str],
    max_examples: int,
    report_dir: Path,
    options: tuple[str, ...] = (),
    phases: str = PHASES,
    fewer_examples: dict[str, int] | None = None,
) -> FuzzRun:
    """Fuzz the API described at `schema_url` (its base URL is the schema's host).

    `hypothesis_dir` is the module's Hypothesis directory (see `build_unicode_tables`).
    `max_examples` bounds the fuzzing phase per operation; the coverage, examples and stateful
    phases add their own requests on top. `fewer_examples` maps a path regex to a smaller bound
    for the operations whose paths it matches (every phase and check still runs on them).
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    har_path = report_dir / "requests.har"
    json_path = report_dir / "run.json"
    config = report_dir / "schemathesis.toml"
    config.write_text(
        "".join(
            f"[[operations]]\ninclude-path-regex = '{regex}'\ngeneration.max-examples = {count}\n"
            for regex, count in (fewer_examples or {}).items()
        )
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        schema_url,
        "--checks",
        "all",
        "--phases",
        phases,
        "--seed",
        str(SEED),
        "--max-examples",
        str(max_examples),
        "--generation-database",
        "none",  # no examples carried over from an earlier run
        # Hypothesis' data-generation speed check fails on a busy machine, never on the API.
        "--suppress-health-check",
        "too_slow",
        "--continue-on-failure",
        "--request-timeout",
        str(REQUEST_TIMEOUT_SECONDS),
        "--report",
        "json,har,junit",
        "--report-dir",
        str(report_dir),
        "--report-har-path",
        str(har_path),
        "--report-json-path",
        str(json_path),
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    command += options
    try:
        completed = subprocess.run(
            command,
            cwd=report_dir,  # keeps Schemathesis' files out of the repository
            env={**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(hypothesis_dir)},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        partial = expired.stdout or ""
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        raise AssertionError(
            f"schemathesis did not finish within {RUN_TIMEOUT_SECONDS} s:\n{text[-REPORT_CHARS:]}"
        ) from None
    output = completed.stdout + completed.stderr
    report = json.loads(json_path.read_text()) if json_path.exists() else {}
    return FuzzRun(
        exit_code=completed.returncode,
        report_dir=report_dir,
        output=output,
        report=report,
        requests=count_requests(har_path),
    )


def count_requests(har_path: Path) -> int:
    """Requests recorded in a HAR file (0 when the run wrote none)."""
    if not har_path.exists():
        return 0
    return len(json.loads(har_path.read_text())["log"]["entries"])


def run_side_by_side(runs: dict[str, Callable[[], FuzzRun]]) -> dict[str, FuzzRun]:
    """Start every run at once and return each one's result by name.

    A run alternates between generating requests (the CLI) and answering them (the service),
    so one run keeps about one core busy: side by side they use both.
    """
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {name: pool.submit(run) for name, run in runs.items()}
        return {name: future.result() for name, future in futures.items()}
