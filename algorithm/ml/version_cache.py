"""A per-host cache of verified model versions, bounded in size, for the object store.

Layout: `<cache_dir>/<version>/{vectorizer.pickle, model.pickle, manifest.json}`. A version
enters the cache only whole and verified: it is written into a hidden temporary directory beside
it (by `admit`'s caller), every file checked against the signed manifest, fsynced, then renamed
into place, so a reader finds a complete verified version or none. Several processes of one host
share the cache: each downloads into its own temporary directory, and the first rename wins.
Using a version touches its directory; beyond `max_bytes` the least recently used versions are
removed, never the ones a caller asks to keep (the version being loaded, the ones served).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Collection
from pathlib import Path

from algorithm.ml.artifacts import (
    STALE_TEMP_SECONDS,
    TEMP_PREFIX,
    VERSION_PATTERN,
    ArtifactError,
    fsync_directory,
)

log = logging.getLogger(__name__)


class VersionCache:
    def __init__(self, cache_dir: Path, *, max_bytes: int) -> None:
        self.cache_dir = cache_dir
        self.max_bytes = max_bytes

    def cached(self, version: str) -> Path | None:
        """The cached directory of `version` (touched: recently used), or None."""
        _require_version_name(version)
        path = self.cache_dir / version
        if path.is_symlink() or not path.is_dir():
            return None
        try:
            os.utime(path)
        except FileNotFoundError:  # evicted by another process meanwhile
            return None
        return path

    def new_temp_dir(self, version: str) -> Path:
        """A fresh hidden directory to download `version` into (its caller's alone)."""
        _require_version_name(version)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{TEMP_PREFIX}{version}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def admit(self, temp_dir: Path, version: str, *, keep: Collection[str] = ()) -> Path:
        """Rename a complete, verified download into the cache; evict beyond the bound.

        When another process admitted the same version first, its copy is kept and ours goes.
        """
        fsync_directory(temp_dir)
        final = self.cache_dir / version
        try:
            os.rename(temp_dir, final)
        except OSError:
            shutil.rmtree(temp_dir, ignore_errors=True)
            if not final.is_dir():
                raise
        fsync_directory(self.cache_dir)
        self.evict(keep={version, *keep})
        return final

    def forget(self, version: str) -> None:
        """Remove a cached version (one that failed to load: the next load downloads it again)."""
        _require_version_name(version)
        shutil.rmtree(self.cache_dir / version, ignore_errors=True)

    def size_bytes(self) -> int:
        """The bytes of every cached version."""
        return sum(size for _, _, size in self._entries())

    def evict(self, *, keep: Collection[str] = ()) -> list[str]:
        """Remove least recently used versions until the cache fits; stale downloads too."""
        entries = sorted(self._entries(), key=lambda entry: entry[1])  # oldest use first
        total = sum(size for _, _, size in entries)
        removed = []
        for version, _, size in entries:
            if total <= self.max_bytes:
                break
            if version in keep:
                continue
            shutil.rmtree(self.cache_dir / version, ignore_errors=True)
            total -= size
            removed.append(version)
            log.info("removed model version %s from the cache (least recently used)", version)
        self._remove_stale_downloads()
        return removed

    def _entries(self) -> list[tuple[str, float, int]]:
        """(version, last use, bytes) of every cached version."""
        entries: list[tuple[str, float, int]] = []
        if not self.cache_dir.is_dir():
            return entries
        for path in self.cache_dir.iterdir():
            if not VERSION_PATTERN.match(path.name) or path.is_symlink():
                continue
            try:
                used = path.stat().st_mtime
                size = sum(file.stat().st_size for file in path.iterdir())
            except OSError:  # removed by another process meanwhile
                continue
            entries.append((path.name, used, size))
        return entries

    def _remove_stale_downloads(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.cache_dir.iterdir():
            try:
                if path.name.startswith(TEMP_PREFIX) and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue


def _require_version_name(version: str) -> None:
    if not VERSION_PATTERN.match(version):
        raise ArtifactError(f"{version!r} is not a version name; refusing to cache it")
