"""Versioned model publication and loading under one model root.

Layout: `<model_root>/<version>/{model.pickle, vectorizer.pickle, manifest.json}` and a relative
symlink `<model_root>/current -> <version>`. The publisher writes a version into a hidden
temporary directory, fsyncs it, renames it into place and only then switches `current` with an
atomic `os.replace`, so a reader sees the old complete version or the new complete one, never a
mix; a failed publish leaves nothing visible. The loader follows `current` only to a version
directory directly inside the model root, trusts a manifest only when its signature verifies
(algorithm/ml/signing.py: the key is never on the volume), and checks every pickle's sha256
against it before unpickling.

Errors: ArtifactError (anything wrong with a published version; `reason` names a refusal),
NoPublishedModel (no `current` yet); plain domain errors that the serving code maps to its answers.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import platform
import re
import secrets
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy
import scipy
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from algorithm.ml.predictor import feature_blocks
from algorithm.ml.signing import ManifestNotTrusted, SigningKeys
from algorithm.ml.training import TrainedModel

VECTORIZER_FILE = "vectorizer.pickle"
CLASSIFIER_FILE = "model.pickle"
CURRENT_LINK = "current"
MANIFEST_FILE = "manifest.json"
TEMP_PREFIX = ".tmp-"
LINK_TEMP_PREFIX = ".current-"
# Leftover temporary entries older than this belong to a crashed publish, not a running one.
STALE_TEMP_SECONDS = 15 * 60
# A switch holds its temporary link for microseconds: one older than this is a dead switch's.
STALE_SWITCH_LINK_SECONDS = 60
VERSION_PATTERN = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
# ArtifactError.reason beyond the signature's (signing.py): a pickle that is not what its signed
# manifest says, or anything else wrong with a version.
SHA256_MISMATCH = "sha256_mismatch"
INVALID = "invalid"

logger = logging.getLogger(__name__)


class ArtifactError(Exception):
    """A model version or file is missing, corrupt, untrusted, or outside the model root."""

    def __init__(self, message: str, *, reason: str = INVALID) -> None:
        super().__init__(message)
        self.reason = reason


class NoPublishedModel(Exception):
    """Nothing is published under the model root yet (no `current` link)."""


@dataclass(frozen=True)
class LoadedVersion:
    """A verified model version as read from disk."""

    version: str
    manifest: dict[str, Any]
    model: TrainedModel


def sha256_of(data: bytes) -> str:
    """Return the sha256 hex digest of data."""
    return hashlib.sha256(data).hexdigest()


def write_synced(path: Path, data: bytes) -> None:
    """Write data to a new file and fsync it, so a later rename publishes complete bytes."""
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_model(model: TrainedModel, directory: Path) -> dict[str, str]:
    """Pickle the vectorizer and classifier into directory (fsynced); return file -> sha256."""
    checksums = {}
    for name, obj in ((VECTORIZER_FILE, model.vectorizer), (CLASSIFIER_FILE, model.classifier)):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        write_synced(directory / name, data)
        checksums[name] = sha256_of(data)
    return checksums


def read_regular_file(path: Path) -> bytes:
    """Read a file's bytes, refusing symlinks (a model file must live in its version dir)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with io.FileIO(fd, "rb") as handle:
        return handle.readall()


def load_model(directory: Path, *, expected_sha256: dict[str, str]) -> TrainedModel:
    """Load a saved model, checking each file's sha256 before unpickling (ArtifactError)."""
    verified = {}
    # Every file is checked before any is unpickled: unpickling untrusted bytes runs code.
    for name in (VECTORIZER_FILE, CLASSIFIER_FILE):
        if name not in expected_sha256:
            raise ArtifactError(f"no expected sha256 given for {name}")
        try:
            data = read_regular_file(directory / name)
        except OSError as exc:
            raise ArtifactError(f"cannot read {directory / name}: {exc}") from exc
        if sha256_of(data) != expected_sha256[name]:
            raise ArtifactError(
                f"{directory / name} does not match its sha256; not loading", reason=SHA256_MISMATCH
            )
        verified[name] = data
    loaded = {}
    for name, data in verified.items():
        try:
            loaded[name] = pickle.loads(data)
        except Exception as exc:  # a corrupt pickle can raise nearly anything
            raise ArtifactError(f"{directory / name} does not unpickle: {exc!r}") from exc
    vectorizer, classifier = loaded[VECTORIZER_FILE], loaded[CLASSIFIER_FILE]
    if not is_tfidf_features(vectorizer) or not hasattr(classifier, "coef_"):
        raise ArtifactError(f"{directory} does not hold a fitted vectorizer and classifier")
    return TrainedModel(vectorizer=vectorizer, classifier=classifier)


def is_tfidf_features(vectorizer: object) -> bool:
    """A TfidfVectorizer, or an unweighted FeatureUnion of them (words and characters)."""
    try:
        return all(isinstance(block, TfidfVectorizer) for block in feature_blocks(vectorizer))
    except ValueError:  # weighted: FastPredictor cannot serve it
        return False


def new_version_id(now: datetime | None = None) -> str:
    """Return a unique id sorting in creation order, e.g. 20261123T161500123456Z-1a2b3c4d."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def library_versions() -> dict[str, str]:
    """Return the versions that decide whether a pickle loads the same elsewhere."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_current(model_root: Path, version: str) -> None:
    """Point `current` at version atomically: a new relative symlink replaces the old one.

    Each switch makes its own temporary link: one left behind by a switch that died half-way
    (or that runs at the same time) never stops another; leftovers are removed once stale.
    """
    temp_link = model_root / f"{LINK_TEMP_PREFIX}{version}-{secrets.token_hex(4)}"
    os.symlink(version, temp_link)  # relative, so the volume can be mounted anywhere
    try:
        os.replace(temp_link, model_root / CURRENT_LINK)
    except BaseException:
        temp_link.unlink(missing_ok=True)
        raise
    fsync_directory(model_root)
    remove_stale_switch_links(model_root)


def remove_stale_switch_links(model_root: Path) -> None:
    """Remove the temporary links of switches that died between making and renaming them."""
    cutoff = time.time() - STALE_SWITCH_LINK_SECONDS
    for entry in model_root.iterdir():
        if not entry.name.startswith(LINK_TEMP_PREFIX):
            continue
        try:
            if entry.is_symlink() and entry.lstat().st_mtime < cutoff:
                entry.unlink()
        except FileNotFoundError:  # another switch renamed or removed it meanwhile
            continue
        except OSError:
            logger.warning("could not remove the stale link %s", entry, exc_info=True)


def publish_model_version(
    model_root: Path,
    model: TrainedModel,
    *,
    metrics: dict[str, Any],
    fingerprint: dict[str, Any],
    rows: int,
    signing_keys: SigningKeys,
    retention: int | None = 5,
    make_current: bool = True,
) -> dict[str, Any]:
    """Publish a new version, its manifest signed with the first key, and return the manifest.

    With `make_current` (the default for callers without a registry) `current` switches to it;
    the worker publishes with `make_current=False` and switches only if the gate promotes it.
    With a `retention`, versions beyond the newest `retention` are pruned; None prunes nothing
    (the worker prunes itself, sparing what the registry can still restore).
    """
    model_root.mkdir(parents=True, exist_ok=True)
    version = new_version_id()
    temp_dir = model_root / f"{TEMP_PREFIX}{version}"
    final_dir = model_root / version
    temp_dir.mkdir()
    try:
        manifest = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "rows": rows,
            "labels": model.labels,
            "metrics": metrics,
            "fingerprint": fingerprint,
            "sha256": save_model(model, temp_dir),
            "library_versions": library_versions(),
        }
        write_synced(temp_dir / MANIFEST_FILE, signed_manifest_bytes(manifest, signing_keys))
        fsync_directory(temp_dir)
        os.rename(temp_dir, final_dir)
        fsync_directory(model_root)
        if make_current:
            switch_current(model_root, version)
    except BaseException:
        # Nothing may stay visible: `current` still names the previous version at this point.
        shutil.rmtree(temp_dir, ignore_errors=True)
        if os.path.realpath(model_root / CURRENT_LINK) != os.path.realpath(final_dir):
            shutil.rmtree(final_dir, ignore_errors=True)
        raise
    if retention is not None:
        prune_versions(model_root, retention=retention)
    return manifest


def versions_beyond_retention(model_root: Path, *, retention: int) -> list[str]:
    """The version directories older than the newest `retention`, never the one `current` names."""
    current = current_version_name(model_root)
    versions = sorted(p.name for p in model_root.iterdir() if VERSION_PATTERN.match(p.name))
    kept = set(versions[-retention:] if retention > 0 else []) | {current}
    return [name for name in versions if name not in kept]


def prune_versions(
    model_root: Path, *, retention: int, spare: Callable[[list[str]], Collection[str]] | None = None
) -> list[str]:
    """Delete versions beyond the newest `retention` (never `current`) and stale temp entries.

    `spare` is asked, with the versions beyond retention, which of them must stay (the worker
    answers from the registry: every version that can still be served or restored).
    """
    candidates = versions_beyond_retention(model_root, retention=retention)
    spared = set(spare(candidates)) if spare is not None and candidates else set()
    removed = []
    for name in candidates:
        if name not in spared:
            shutil.rmtree(model_root / name, ignore_errors=True)
            removed.append(name)
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in model_root.iterdir():
        if entry.name.startswith((TEMP_PREFIX, LINK_TEMP_PREFIX)):
            try:
                if entry.lstat().st_mtime < cutoff:
                    if entry.is_symlink():
                        entry.unlink()
                    else:
                        shutil.rmtree(entry)
                    removed.append(entry.name)
            except OSError:
                logger.warning("could not remove stale %s", entry, exc_info=True)
    return removed


def current_version_name(model_root: Path) -> str | None:
    """Return the name `current` links to, or None when there is no link."""
    try:
        return os.readlink(model_root / CURRENT_LINK)
    except OSError:
        return None


def current_signature(model_root: Path) -> tuple[str, int, int] | None:
    """Return (link target, link mtime ns, link inode): cheap to poll, no file reads."""
    link = model_root / CURRENT_LINK
    try:
        stat = os.lstat(link)
        return os.readlink(link), stat.st_mtime_ns, stat.st_ino
    except OSError:
        return None


def resolve_current(model_root: Path) -> Path:
    """Return the real version directory `current` names, refusing anything outside the root."""
    link = model_root / CURRENT_LINK
    if not os.path.lexists(link):
        raise NoPublishedModel(f"no model published yet under {model_root}: train one first")
    if not link.is_symlink():
        raise ArtifactError(f"{link} is not a symlink; refusing to load it")
    root = model_root.resolve()
    target = Path(os.path.realpath(link))
    # Only a version directory directly inside the root: no `..`, no absolute target elsewhere,
    # no chain of links leading out, no half-written temporary directory.
    if target.parent != root or not VERSION_PATTERN.match(target.name):
        raise ArtifactError(f"{link} points to {os.readlink(link)!r}, outside {root}; refusing")
    if not target.is_dir():
        raise ArtifactError(f"{link} points to {target}, which is not a version directory")
    return target


def signed_manifest_bytes(manifest: dict[str, Any], signing_keys: SigningKeys) -> bytes:
    """The bytes of manifest.json: the manifest with its signature."""
    return json.dumps(signing_keys.sign(manifest), indent=2, sort_keys=True).encode()


def replace_signed_manifest(
    version_dir: Path, manifest: dict[str, Any], *, signing_keys: SigningKeys
) -> None:
    """Sign an already published version's manifest again, atomically (a new file replaces it)."""
    temp_path = version_dir / f"{TEMP_PREFIX}{MANIFEST_FILE}-{secrets.token_hex(4)}"
    try:
        write_synced(temp_path, signed_manifest_bytes(manifest, signing_keys))
        os.replace(temp_path, version_dir / MANIFEST_FILE)
    finally:
        temp_path.unlink(missing_ok=True)
    fsync_directory(version_dir)


def read_unverified_manifest(version_dir: Path) -> dict[str, Any]:
    """A manifest as the volume holds it, signature unchecked: never a reason to unpickle."""
    try:
        manifest = json.loads((version_dir / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {version_dir / MANIFEST_FILE}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{version_dir / MANIFEST_FILE} is not a JSON object")
    return manifest


def read_manifest(version_dir: Path, *, signing_keys: SigningKeys) -> dict[str, Any]:
    """Read a version's manifest, trusted only once its signature verifies (then sanity-checked).

    Returned without its signature. An unsigned or wrongly signed manifest is an ArtifactError
    whose `reason` says which (signing.py).
    """
    try:
        manifest = signing_keys.verify(read_unverified_manifest(version_dir))
    except ManifestNotTrusted as exc:
        raise ArtifactError(f"{version_dir / MANIFEST_FILE}: {exc}", reason=exc.reason) from exc
    if not isinstance(manifest.get("sha256"), dict):
        raise ArtifactError(f"{version_dir / MANIFEST_FILE} has no sha256 table")
    if manifest.get("version") != version_dir.name:
        raise ArtifactError(
            f"{version_dir / MANIFEST_FILE} names version {manifest.get('version')!r}, "
            f"not {version_dir.name!r}"
        )
    return manifest


def load_version_dir(version_dir: Path, *, signing_keys: SigningKeys) -> LoadedVersion:
    """Load a version directory: signature, then every sha256, then unpickle (ArtifactError)."""
    try:
        manifest = read_manifest(version_dir, signing_keys=signing_keys)
        model = load_model(version_dir, expected_sha256=manifest["sha256"])
    except ArtifactError as exc:
        raise ArtifactError(f"version {version_dir.name}: {exc}", reason=exc.reason) from exc
    return LoadedVersion(version=version_dir.name, manifest=manifest, model=model)


def load_current_version(model_root: Path, *, signing_keys: SigningKeys) -> LoadedVersion:
    """Load the version `current` names, verified (ArtifactError; NoPublishedModel when there is
    none)."""
    return load_version_dir(resolve_current(model_root), signing_keys=signing_keys)
