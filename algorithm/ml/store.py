"""Where published model versions live: the model volume, or an S3-compatible object store.

Chosen by configuration (`MODEL_STORE_URL`): empty means the model volume at MODEL_DIR, today's
layout (algorithm/ml/artifacts.py), which the worker writes and every algorithm process reads;
`s3://bucket/prefix` means an object store (algorithm/ml/s3_store.py) that the worker uploads
each version to and every host downloads from into its own verified cache. Either way a caller
gets a local version directory to load, and the loader verifies it (signature, then digests)
before anything is unpickled.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from algorithm.ml.artifacts import VERSION_PATTERN, ArtifactError
from algorithm.ml.signing import SigningKeys

S3_SCHEME = "s3"
# ArtifactError.reason for what only an object store can do wrong (the rest: artifacts.py).
STORE_UNREACHABLE = "store_unreachable"  # no answer, a timeout, a refusal, a broken download
MISSING_MANIFEST = "missing_manifest"  # the version is not (or not completely) in the store
# Worth trying again on the next look: the store may answer then. A version that is wrong
# (signature, digest, missing) is not downloaded again until the registry announces again.
TRANSIENT_REASONS = frozenset({STORE_UNREACHABLE})


class ArtifactStore(Protocol):
    """What the worker and the algorithm processes need from wherever versions live."""

    # Whether a `current` link on the model volume says what to serve while no registry
    # state exists (only the volume has one).
    follows_current_link: bool

    def publish(self, version_dir: Path) -> None:
        """Make a version published under the model root available to every host."""

    def version_dir(
        self, version: str, *, signing_keys: SigningKeys, keep: Collection[str] = ()
    ) -> Path:
        """A local directory holding `version` (ArtifactError when it cannot be had)."""
        ...

    def forget(self, version: str) -> None:
        """Drop this host's copy of a version that failed to load (nothing on the volume)."""

    def delete(self, versions: Collection[str]) -> None:
        """Remove versions pruned from the model root from the store as well."""


class FilesystemStore:
    """The model volume: the worker publishes into it, every process reads from it."""

    follows_current_link = True

    def __init__(self, model_root: Path) -> None:
        self.model_root = model_root

    def publish(self, version_dir: Path) -> None:
        return None  # published in place

    def version_dir(
        self, version: str, *, signing_keys: SigningKeys, keep: Collection[str] = ()
    ) -> Path:
        if not VERSION_PATTERN.match(version):
            raise ArtifactError(f"{version!r} is not a version name; refusing to load it")
        path = self.model_root / version
        if path.is_symlink() or not path.is_dir():
            raise ArtifactError(f"version {version} is not a directory under {self.model_root}")
        return path

    def forget(self, version: str) -> None:
        return None  # the volume's copy is the only one

    def delete(self, versions: Collection[str]) -> None:
        return None  # prune_versions removed them from the volume


def parse_store_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix` (ValueError for anything else)."""
    parts = urlsplit(url)
    if parts.scheme != S3_SCHEME or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"MODEL_STORE_URL must be empty or s3://bucket/prefix, not {url!r}")
    return parts.netloc, parts.path.strip("/")


def open_store(
    url: str,
    *,
    model_root: Path,
    cache_dir: Path,
    cache_max_bytes: int,
    region: str | None = None,
) -> ArtifactStore:
    """The store `url` names: empty for the model volume, `s3://bucket/prefix` for S3."""
    if not url:
        return FilesystemStore(model_root)
    bucket, prefix = parse_store_url(url)
    # Imported here: only processes configured for S3 load boto3 (a second of start-up).
    from algorithm.ml.s3_store import S3Store, make_client
    from algorithm.ml.version_cache import VersionCache

    return S3Store(
        make_client(region=region),
        bucket=bucket,
        prefix=prefix,
        cache=VersionCache(cache_dir, max_bytes=cache_max_bytes),
    )
