"""Hostile clients against web and the algorithm service: their memory and disk, held or not.

Starts both services (one worker each, from `--checkout`, this one by default) on 127.0.0.1 with
an embedded PostgreSQL and Redis and a temporary directory of their own, then runs each case
below with `--connections` clients at once: large uploads that stall one part short of their
end, and bodies trickled a byte a second. For every case it reports the service's RSS (its
pool's processes together) and the disk its temporary files hold (open files included, since
Django's spool files are unlinked at once) before, while the clients hold on, and once the
body deadline has passed; and how many of the connections the server has closed by then.

    python -m loadtests.hostile_clients [--checkout DIR] [--connections 200] [--mib 4]

Bounded: every client is local, every case lasts at most `--send-seconds` plus the deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import selectors
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.harness.embedded import start_postgres, start_redis
from core.harness.scratch import free_port, make_scratch_dir
from core.process import Child, spawn, stop_children

HOST = "127.0.0.1"
MIB = 1 << 20


@dataclass(frozen=True)
class Case:
    name: str
    service: str
    head: str  # the request line and headers but Host and Content-Length; {token} filled in
    announced: int  # the Content-Length announced (0: chunked)
    trickle: bool = False  # a byte a second instead of `--mib` at once


CASES = (
    Case(
        "web: anonymous chunked upload to /health/live",
        "web",
        "POST /health/live HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
        0,
    ),
    Case(
        "web: anonymous upload to /api/predict/ announcing 60 MiB",
        "web",
        "POST /api/predict/ HTTP/1.1\r\nContent-Type: application/json\r\n",
        60 * MIB,
    ),
    Case(
        "algorithm: tokenless upload to /predict announcing 32 MiB",
        "algorithm",
        "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n",
        32 * MIB,
    ),
    Case(
        "algorithm: upload with the token to /predict announcing 32 MiB",
        "algorithm",
        "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer {token}\r\n",
        32 * MIB,
    ),
    Case(
        "web: body trickled to /api/predict/, a byte a second",
        "web",
        "POST /api/predict/ HTTP/1.1\r\nContent-Type: application/json\r\n",
        1000,
        trickle=True,
    ),
    Case(
        "algorithm: body trickled to /predict with the token",
        "algorithm",
        "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer {token}\r\n",
        1000,
        trickle=True,
    ),
)


def pool_pids(pid: int) -> list[int]:
    """`pid` and its descendants."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(descendant for child in children for descendant in pool_pids(int(child)))]


def rss_mib(pid: int) -> float:
    total = 0
    for each in pool_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total / MIB


def temp_disk_mib(pid: int, temp_dir: Path) -> float:
    """Disk held by files under temp_dir: those still named, and those open but unlinked."""
    seen: dict[tuple[int, int], int] = {}
    for path in temp_dir.rglob("*"):
        with contextlib.suppress(OSError):
            stat = path.stat()
            seen[(stat.st_dev, stat.st_ino)] = stat.st_blocks * 512
    for each in pool_pids(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{each}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(str(temp_dir)):
                        stat = fd.stat()
                        seen[(stat.st_dev, stat.st_ino)] = stat.st_blocks * 512
    return sum(seen.values()) / MIB


def run_case(case: Case, *, port: int, token: str, args: argparse.Namespace) -> list[socket.socket]:
    """Open the case's connections and send what it sends; the sockets, still open."""
    length = f"Content-Length: {case.announced}\r\n" if case.announced else ""
    head = (case.head.format(token=token) + f"Host: {HOST}\r\n{length}\r\n").encode()
    payload = b"x" * args.mib * MIB
    if not case.announced:
        payload = b"%x\r\n%s\r\n" % (len(payload), payload)
    pending: dict[socket.socket, memoryview] = {}
    for _ in range(args.connections):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.setblocking(False)
        pending[sock] = memoryview(head + (b"{" if case.trickle else payload))
    sockets = list(pending)
    by_fd = {sock.fileno(): sock for sock in sockets}
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_WRITE)
    deadline = time.monotonic() + args.send_seconds
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = by_fd[key.fd]
            try:
                sent = sock.send(pending[sock])
            except OSError:  # the server answered and closed
                sent = len(pending[sock])
            pending[sock] = pending[sock][sent:]
            if not pending[sock]:
                del pending[sock]
                selector.unregister(sock)
    selector.close()
    return sockets


def closed_by_server(sockets: list[socket.socket]) -> int:
    closed = 0
    for sock in sockets:
        try:
            while sock.recv(65536):
                pass  # an answer (413, 401, 408) before the close
            closed += 1
        except BlockingIOError:
            pass  # open, nothing to read
        except OSError:
            closed += 1
    return closed


def trickle(sockets: list[socket.socket], seconds: float) -> None:
    """A byte a second on every connection, for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(b" ")
        time.sleep(1)


@dataclass(frozen=True)
class Service:
    port: int
    child: Child
    temp_dir: Path

    def measure(self) -> tuple[float, float]:
        """(RSS MiB, temporary disk MiB) of the service's pool."""
        return rss_mib(self.child.pid), temp_disk_mib(self.child.pid, self.temp_dir)


def wait_answers(port: int, child: Child, log: Path) -> None:
    """Wait until the service answers GET /health/live (its app loaded, not just listening)."""
    for _ in range(600):
        assert child.running(), log.read_text()
        url = f"http://{HOST}:{port}/health/live"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{port} does not answer: {log}")


@contextlib.contextmanager
def services(checkout: Path, work: Path, *, token: str, body_timeout: float) -> Iterator[dict]:
    """web and the algorithm service, one worker each, by name."""
    children: list[Child] = []
    try:
        pg_port, redis_port = free_port(), free_port()
        pg_log, redis_log = work / "pg.log", work / "redis.log"
        password = secrets.token_urlsafe(24)  # URL-safe: goes into the URLs as it is
        children.append(
            start_postgres(
                work / "pg", port=pg_port, database="textclf", password=password, log_path=pg_log
            )
        )
        children.append(
            start_redis(work / "redis", port=redis_port, password=password, log_path=redis_log)
        )
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            "PYTHONPATH": str(checkout),
            "VAR_DIR": str(work / "var"),
            "DATABASE_URL": f"postgresql://postgres:{password}@{HOST}:{pg_port}/textclf",
            "REDIS_URL": f"redis://:{password}@{HOST}:{redis_port}/0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "MODEL_SIGNING_KEY": secrets.token_urlsafe(32),
            "ALGORITHM_TOKEN": token,
            "ALGORITHM_TOKENS": token,
            "BODY_TIMEOUT_SECONDS": str(body_timeout),
            "ACCESS_LOG": "false",
        }
        running: dict[str, Service] = {}
        for name in ("algorithm", "web"):
            port, temp_dir, log = free_port(), work / f"tmp-{name}", work / f"{name}.log"
            temp_dir.mkdir()
            prefix = name.upper()
            env.update({f"{prefix}_PORT": str(port), f"{prefix}_WORKERS": "1"})
            argv = [sys.executable, "-m", name]
            child = spawn(
                name, argv, env={**env, "TMPDIR": str(temp_dir)}, cwd=checkout, log_path=log
            )
            children.append(child)
            wait_answers(port, child, log)
            running[name] = Service(port, child, temp_dir)
            env["ALGORITHM_URL"] = f"http://{HOST}:{port}"
        yield running
    finally:
        stop_children(children)


def hold(sockets: list[socket.socket], seconds: float, *, trickling: bool) -> None:
    if trickling:
        trickle(sockets, seconds)
    else:
        time.sleep(max(seconds, 0))


def run_cases(running: dict[str, Service], token: str, args: argparse.Namespace) -> list[dict]:
    rows = []
    for case in CASES:
        service = running[case.service]
        before = service.measure()
        sockets = run_case(case, port=service.port, token=token, args=args)
        stalled = time.monotonic()  # every request began before this: its deadline runs
        hold(sockets, 2 + 3 * case.trickle, trickling=case.trickle)
        during = service.measure()
        hold(sockets, args.body_timeout + 3 - (time.monotonic() - stalled), trickling=case.trickle)
        after, closed = service.measure(), closed_by_server(sockets)
        for sock in sockets:
            sock.close()
        time.sleep(2)
        row = {"case": case.name, "before": before, "during": during, "after_deadline": after}
        rows.append({**row, "closed_by_server": closed})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--mib", type=int, default=4, help="MiB each upload sends before stalling")
    parser.add_argument("--send-seconds", type=float, default=20)
    parser.add_argument("--body-timeout", type=float, default=10)
    args = parser.parse_args(argv)
    work, token = make_scratch_dir("hostile-clients-"), secrets.token_urlsafe(32)
    try:
        checkout = args.checkout.resolve()
        with services(checkout, work, token=token, body_timeout=args.body_timeout) as running:
            rows = run_cases(running, token, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    deadline = f"body deadline {args.body_timeout:g} s"
    print(f"\n{args.connections} connections, {args.mib} MiB per upload, {deadline}")
    print("\n| case | before | while held | after the deadline | closed by the server |")
    print("|---|---|---|---|---|")
    for row in rows:
        measured = (row["before"], row["during"], row["after_deadline"])
        cells = " | ".join(f"{rss:.0f} MiB / {disk:.0f} MiB" for rss, disk in measured)
        print(f"| {row['case']} | {cells} | {row['closed_by_server']} of {args.connections} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
