"""Time `make run` to ready and a 10 000-row bulk insert, the way a newcomer meets them.

    .venv/bin/python scripts/stack_timing.py --checkout DIR --var-dir DIR [--fresh-venv]

Starts `make run` in DIR (a clean clone: with --fresh-venv its .venv is removed first, so the
time includes creating it and installing every dependency), polls /health/ready until it answers
200, POSTs 10 000 rows in one request, then stops the stack with Ctrl-C (SIGINT to its group).
Ports are fixed below the ephemeral range so client sockets never hold them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

PORTS = {
    "WEB_PORT": 18000,
    "ALGORITHM_PORT": 18001,
    "EMBEDDED_POSTGRES_PORT": 15432,
    "EMBEDDED_REDIS_PORT": 16379,
}
ROWS = [
    {"text": f"package {i} provides tools for topic {i % 13}", "label": f"l{i % 13}"}
    for i in range(10_000)
]


def wait_ready(stack: subprocess.Popen[bytes], url: str, log: Path) -> None:
    while stack.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"make run exited {stack.returncode}; see {log}")


def time_stack(checkout: Path, var_dir: Path) -> dict[str, float]:
    """Seconds to ready and bulk insert figures for one `make run`."""
    inherited = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update({name: str(port) for name, port in PORTS.items()}, VAR_DIR=str(var_dir))
    web = f"http://127.0.0.1:{PORTS['WEB_PORT']}"
    log = var_dir.with_suffix(".log")
    started = time.monotonic()
    with log.open("wb") as output:
        stack = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(stack, f"{web}/health/ready", log)
            ready = time.monotonic() - started
            posted = time.monotonic()
            response = httpx.post(f"{web}/api/data/", json=ROWS, timeout=120)
            bulk = time.monotonic() - posted
            if response.status_code != 201:
                raise RuntimeError(f"bulk insert answered {response.status_code}: {response.text}")
        finally:
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(timeout=60)
    return {
        "ready_seconds": round(ready, 1),
        "bulk_10000_seconds": round(bulk, 2),
        "rows_per_second": round(len(ROWS) / bulk),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--fresh-venv", action="store_true")
    args = parser.parse_args()
    if args.fresh_venv:
        shutil.rmtree(args.checkout / ".venv", ignore_errors=True)
    print(json.dumps(time_stack(args.checkout.resolve(), args.var_dir.resolve())))


if __name__ == "__main__":
    main()
