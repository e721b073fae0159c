"""Versions published before signed manifests: signed once the registry vouches for their files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from algorithm.ml import artifacts
from tests.algorithm.registry_helpers import forge, publish, train
from tests.helpers import signing_keys

pytestmark = pytest.mark.slow


def unsign(model_dir: Path, version: str) -> dict[str, str]:
    """Make a version look published before manifests were signed; its files' sha256."""
    path = model_dir / version / artifacts.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.pop("signature")
    path.write_text(json.dumps(manifest))
    return dict(manifest["sha256"])


def test_sign_versions_signs_what_the_registry_recorded_and_nothing_else(
    transactional_db: Any,
    make_version: Callable[..., Any],
    test_database_url: str,
    model_dir: Path,
    fixture_corpus: list[tuple[str, str]],
) -> None:
    from web.registry.models import ModelVersion

    first, second = (train(fixture_corpus, slice(start, 300, 2)) for start in (0, 1))
    kept, tampered, unrecorded = (publish(model_dir, first) for _ in range(3))
    for version in (kept, tampered):
        digests = unsign(model_dir, version)
        make_version(version=version)
        ModelVersion.objects.filter(version=version).update(sha256=digests)
    unsign(model_dir, unrecorded)
    forge(model_dir, tampered, second)  # changed on the volume, the manifest made to agree

    signed = subprocess.run(
        [sys.executable, "-m", "worker.sign_versions"],
        env={**os.environ, "DATABASE_URL": test_database_url, "MODEL_DIR": str(model_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert signed.returncode == 1, signed.stderr  # one version differs from the registry
    said = dict(line.split(": ", 1) for line in signed.stdout.splitlines() if ": " in line)
    assert said[kept].startswith("signed")
    assert said[tampered].startswith("NOT signed") and "model.pickle" in said[tampered]
    assert "never recorded" in said[unrecorded]
    keys = signing_keys()
    assert artifacts.load_version_dir(model_dir / kept, signing_keys=keys).version == kept
    for refused in (tampered, unrecorded):
        with pytest.raises(artifacts.ArtifactError) as refusal:
            artifacts.load_version_dir(model_dir / refused, signing_keys=keys)
        assert refusal.value.reason == "unsigned"
