"""Model versions in an S3-compatible object store, through boto3.

Keys are exact: `<prefix>/<version>/<file>`, nothing is ever listed, so a version (or a prefix)
that merely starts like another is never fetched for it. Versions are immutable and complete or
absent: the worker uploads every pickle, then the signed manifest last, each with a conditional
put (`If-None-Match: *`) so nothing already stored is ever replaced; a version exists once its
manifest does. Nothing mutable is kept in the bucket: the registry (PostgreSQL) says which
version is champion.

A host fetches a version into its verified cache (algorithm/ml/version_cache.py): the manifest
first, trusted only once its signature verifies (the key is never in the bucket), then each
pickle streamed into a temporary directory while its sha256 is computed, refused unless it is
the manifest's, and only then renamed into the cache. A truncated, replaced or missing object
never reaches the loader. Endpoint, region and credentials come from boto3's standard sources
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...); checksums are computed only when an operation
requires them, as servers other than AWS expect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Collection
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from algorithm.ml.artifacts import (
    CLASSIFIER_FILE,
    MANIFEST_FILE,
    SHA256_MISMATCH,
    VECTORIZER_FILE,
    ArtifactError,
    write_synced,
)
from algorithm.ml.signing import ManifestNotTrusted, SigningKeys
from algorithm.ml.store import MISSING_MANIFEST, STORE_UNREACHABLE
from algorithm.ml.version_cache import VersionCache

log = logging.getLogger(__name__)
PICKLES = (VECTORIZER_FILE, CLASSIFIER_FILE)
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few KiB; anything bigger is not one
CHUNK_BYTES = 1 << 20
ALREADY_STORED = "already_stored"
NO_SUCH_BUCKET = "NoSuchBucket"  # a configuration error, not a missing version


def make_client(*, region: str | None = None) -> Any:
    """An S3 client from boto3's standard configuration, fit for servers other than AWS too."""
    config = Config(
        # boto3 1.36+ sends and demands CRC checksums by default, which other S3 servers refuse.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=2,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.session.Session().client("s3", region_name=region or None, config=config)


class S3Store:
    follows_current_link = False  # no volume: only the registry says what to serve

    def __init__(self, client: Any, *, bucket: str, prefix: str, cache: VersionCache) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache = cache

    def key(self, version: str, name: str) -> str:
        """The exact key of one file of one version."""
        return f"{self.prefix}/{version}/{name}" if self.prefix else f"{version}/{name}"

    def publish(self, version_dir: Path) -> None:
        """Upload a published version: pickles first, the manifest last (ArtifactError)."""
        version = version_dir.name
        for name in (*PICKLES, MANIFEST_FILE):
            with (version_dir / name).open("rb") as handle:
                self._put_new(self.key(version, name), handle)
        log.info("uploaded model version %s to s3://%s/%s", version, self.bucket, self.prefix)

    def delete(self, versions: Collection[str]) -> None:
        """Remove versions: the manifest first, so a version is whole until it is gone."""
        for version in versions:
            for name in (MANIFEST_FILE, *PICKLES):
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=self.key(version, name))
                except (BotoCoreError, ClientError) as exc:
                    raise ArtifactError(
                        f"cannot delete {self.key(version, name)}: {exc}", reason=STORE_UNREACHABLE
                    ) from exc

    def forget(self, version: str) -> None:
        self.cache.forget(version)

    def version_dir(
        self, version: str, *, signing_keys: SigningKeys, keep: Collection[str] = ()
    ) -> Path:
        """The cached copy of `version`, downloaded and verified first if this host has none."""
        cached = self.cache.cached(version)
        if cached is not None:
            return cached
        temp_dir = self.cache.new_temp_dir(version)
        try:
            self._download_verified(version, temp_dir, signing_keys=signing_keys)
            return self.cache.admit(temp_dir, version, keep=keep)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)  # refused: nothing of it stays

    def _download_verified(self, version: str, into: Path, *, signing_keys: SigningKeys) -> None:
        manifest_bytes = self._get_manifest(version)
        try:
            manifest = signing_keys.verify(json.loads(manifest_bytes))
        except ManifestNotTrusted as exc:
            raise ArtifactError(f"version {version}: {exc}", reason=exc.reason) from exc
        except (ValueError, AttributeError) as exc:
            raise ArtifactError(f"version {version}: the manifest is not JSON") from exc
        digests = manifest.get("sha256")
        if manifest.get("version") != version or not isinstance(digests, dict):
            raise ArtifactError(f"version {version}: the manifest is not this version's")
        budget = self.cache.max_bytes
        for name in PICKLES:
            expected = digests.get(name)
            if not isinstance(expected, str):
                raise ArtifactError(f"version {version}: the manifest names no sha256 of {name}")
            budget -= self._download_file(
                self.key(version, name), into / name, sha256=expected, max_bytes=budget
            )
        write_synced(into / MANIFEST_FILE, manifest_bytes)

    def _get_manifest(self, version: str) -> bytes:
        key = self.key(version, MANIFEST_FILE)
        body = self._get(key, missing_reason=MISSING_MANIFEST)
        try:
            data = body.read(MAX_MANIFEST_BYTES + 1)
        except BotoCoreError as exc:
            raise ArtifactError(
                f"reading {key} broke off: {exc}", reason=STORE_UNREACHABLE
            ) from exc
        finally:
            body.close()
        if len(data) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{key} is larger than a manifest can be")
        return bytes(data)

    def _download_file(self, key: str, path: Path, *, sha256: str, max_bytes: int) -> int:
        """Stream one object into `path`, refusing it unless its bytes have `sha256`."""
        digest = hashlib.sha256()
        size = 0
        body = self._get(key, missing_reason=MISSING_MANIFEST)
        with closing(body), path.open("xb") as out:
            try:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactError(
                            f"{key} is larger than the model cache (MODEL_CACHE_MAX_MB)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            except BotoCoreError as exc:  # the connection broke, or fewer bytes than announced
                raise ArtifactError(
                    f"downloading {key} broke off: {exc}", reason=STORE_UNREACHABLE
                ) from exc
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ArtifactError(
                f"s3://{self.bucket}/{key} does not match the sha256 its signed manifest names "
                f"(truncated or replaced, {size} bytes); not loading it",
                reason=SHA256_MISMATCH,
            )
        return size

    def _get(self, key: str, *, missing_reason: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if _status(exc) == 404 and _code(exc) != NO_SUCH_BUCKET:
                raise ArtifactError(
                    f"s3://{self.bucket}/{key} does not exist (the version is not in the store, "
                    "or its upload did not finish)",
                    reason=missing_reason,
                ) from exc
            raise ArtifactError(
                f"the store refused s3://{self.bucket}/{key}: {exc}", reason=STORE_UNREACHABLE
            ) from exc
        except BotoCoreError as exc:
            raise ArtifactError(
                f"the store does not answer for s3://{self.bucket}/{key}: {exc}",
                reason=STORE_UNREACHABLE,
            ) from exc

    def _put_new(self, key: str, body: Any) -> None:
        """Store an object that must not exist yet (the store answers 412 when it does)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if _status(exc) == 412:
                raise ArtifactError(
                    f"s3://{self.bucket}/{key} exists already; stored versions are never replaced",
                    reason=ALREADY_STORED,
                ) from exc
            raise ArtifactError(f"cannot upload {key}: {exc}", reason=STORE_UNREACHABLE) from exc
        except BotoCoreError as exc:
            raise ArtifactError(f"cannot upload {key}: {exc}", reason=STORE_UNREACHABLE) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
