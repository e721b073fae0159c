"""`python -m worker.sign_versions`: sign the versions on the volume that the registry recorded.

For versions published before manifests were signed, and after a key rotation (`new,old`: every
version is signed again with the first key, then `old` can go). The registry is the truth, not
the volume: a version is signed only when the sha256 of each of its files, computed here, equals
what PostgreSQL recorded at publication (`model_version.sha256`) and its manifest names the same
version and digests. Anything else is listed and left as it is, so the algorithm service keeps
refusing it. Run it with the worker's environment (DATABASE_URL, MODEL_DIR, MODEL_SIGNING_KEY).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from algorithm.ml import artifacts
from algorithm.ml.signing import ManifestNotTrusted, SigningKeys
from worker import registry_sql
from worker.config import WorkerSettings
from worker.rows import database_engine

PICKLES = (artifacts.VECTORIZER_FILE, artifacts.CLASSIFIER_FILE)


def version_dirs(model_root: Path) -> list[Path]:
    """Every published version directory (no temporary ones, no symlinks)."""
    return sorted(
        entry
        for entry in model_root.iterdir()
        if artifacts.VERSION_PATTERN.match(entry.name) and entry.is_dir() and not entry.is_symlink()
    )


def file_digests(version_dir: Path) -> dict[str, str]:
    """The sha256 of each pickle as it is on the volume now."""
    return {
        name: artifacts.sha256_of(artifacts.read_regular_file(version_dir / name))
        for name in PICKLES
    }


def check_and_sign(
    version_dir: Path, recorded: dict[str, str] | None, keys: SigningKeys
) -> tuple[bool, str]:
    """Sign one version if the registry vouches for its files; (ok, what happened)."""
    try:
        manifest = artifacts.read_unverified_manifest(version_dir)
    except artifacts.ArtifactError as exc:
        return False, f"left alone: {exc}"
    first_key_only = SigningKeys(keys.keys[:1])
    try:
        first_key_only.verify(manifest)
        return True, "already signed with the current key"
    except ManifestNotTrusted:
        pass
    if recorded is None:
        return True, "left alone: the registry never recorded it (it cannot be served)"
    body = {key: value for key, value in manifest.items() if key != "signature"}
    problem = differences(version_dir, body, recorded)
    if problem:
        return False, f"NOT signed: {problem}"
    artifacts.replace_signed_manifest(version_dir, body, signing_keys=keys)
    return True, "signed: its files match the registry's sha256"


def differences(version_dir: Path, manifest: dict[str, Any], recorded: dict[str, str]) -> str:
    """What differs between the version's files, its manifest and the registry ('' if nothing)."""
    if manifest.get("version") != version_dir.name:
        return f"its manifest names version {manifest.get('version')!r}"
    if sorted(recorded) != sorted(PICKLES):
        return f"the registry recorded digests for {sorted(recorded)}, not {sorted(PICKLES)}"
    try:
        on_disk = file_digests(version_dir)
    except OSError as exc:
        return f"cannot read its files: {exc}"
    changed = [name for name in PICKLES if on_disk[name] != recorded[name]]
    if changed:
        return f"{', '.join(changed)} changed since the registry recorded it"
    if manifest.get("sha256") != recorded:
        return "its manifest's sha256 differ from the registry's"
    return ""


async def sign_versions(settings: WorkerSettings) -> int:
    """Sign every version the registry vouches for; 1 if any version differs from it."""
    keys = SigningKeys.from_secrets(settings.model_signing_key)
    found = version_dirs(settings.model_root)
    engine = database_engine(settings.database_url)
    try:
        recorded = await registry_sql.recorded_sha256(engine, [d.name for d in found])
    finally:
        await engine.dispose()
    failed = 0
    for version_dir in found:
        ok, outcome = check_and_sign(version_dir, recorded.get(version_dir.name), keys)
        failed += not ok
        print(f"{version_dir.name}: {outcome}", flush=True)
    print(f"{len(found)} versions under {settings.model_root}, {failed} not signed", flush=True)
    return 1 if failed else 0


def main() -> int:
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.model_root.is_dir():
        print(f"error: no model directory at {settings.model_root}", file=sys.stderr)
        return 2
    return asyncio.run(sign_versions(settings))


if __name__ == "__main__":
    sys.exit(main())
