"""Drive wrk (a C load generator) with JSON POST bodies and read its results as numbers.

On a 2-core machine the load generator shares the cores with the servers it measures; wrk with
one thread costs a small fraction of a core where a Python generator would take most of one.
`wrk_post.lua` cycles through the bodies and prints one `WRK_JSON {...}` line from wrk's `done`
hook; every answer outside 2xx counts as an error, as do connection errors and timeouts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("wrk_post.lua")
GET_SCRIPT = Path(__file__).with_name("wrk_get.lua")  # GETs of the URL itself, no bodies
RESULT_PREFIX = "WRK_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: totals, errors of every kind, and latency percentiles (microseconds)."""

    requests: int
    duration_us: int
    errors: int  # answers outside 2xx, socket errors and timeouts
    p50_us: int
    p99_us: int

    @property
    def ok_per_second(self) -> float:
        """Successful (2xx) requests per second."""
        return (self.requests - self.errors) / (self.duration_us / 1e6)


def wrk_binary() -> str:
    """Return the path of wrk, or raise WrkError saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: `apt-get install -y wrk` (make bench does this)")
    return found


def parse_result(stdout: str) -> WrkResult:
    """Read the WRK_JSON line that wrk_post.lua prints."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line.removeprefix(RESULT_PREFIX))
            return WrkResult(**{f.name: int(data[f.name]) for f in dataclasses.fields(WrkResult)})
    raise WrkError(f"wrk printed no result line:\n{stdout[-2000:]}")


def run_wrk(
    url: str,
    bodies_file: Path,
    *,
    connections: int,
    seconds: float,
    timeout_seconds: float,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> WrkResult:
    """POST the bodies of `bodies_file` (one JSON per line) to `url` for `seconds`.

    With method "GET", GET `url` instead (the bodies are not read).

    `headers` go with every request; they reach the Lua script through the environment, not
    wrk's command line, so a token does not show in the process list.
    """
    argv = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_seconds))}s",
        "-s",
        str(GET_SCRIPT if method == "GET" else LUA_SCRIPT),
        url,
        "--",
        str(bodies_file),
    ]
    header_lines = "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + timeout_seconds + 30,
        env={**os.environ, "WRK_HEADERS": header_lines},
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return parse_result(done.stdout)
