"""Versions published before signed manifests: signed once the registry vouches for their files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from algorithm.ml import artifacts
from tests.algorithm.registry_helpers import fit_quickly, forge, publish
from tests.helpers import signing_keys
from worker import sign_versions

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
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from web.registry.models import ModelVersion

    first, second = (fit_quickly(fixture_corpus, slice(start, None, 2)) for start in (0, 1))
    kept, tampered, unrecorded = (publish(model_dir, first) for _ in range(3))
    for version in (kept, tampered):
        digests = unsign(model_dir, version)
        make_version(version=version)
        ModelVersion.objects.filter(version=version).update(sha256=digests)
    unsign(model_dir, unrecorded)
    forge(model_dir, tampered, second)  # changed on the volume, the manifest made to agree

    monkeypatch.setenv("DATABASE_URL", test_database_url)
    monkeypatch.setenv("MODEL_DIR", str(model_dir))

    assert sign_versions.main() == 1  # one version differs from the registry
    said = dict(
        line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line
    )
    assert said[kept].startswith("signed")
    assert said[tampered].startswith("NOT signed") and "model.pickle" in said[tampered]
    assert "never recorded" in said[unrecorded]
    keys = signing_keys()
    assert artifacts.load_version_dir(model_dir / kept, signing_keys=keys).version == kept
    for refused in (tampered, unrecorded):
        with pytest.raises(artifacts.ArtifactError) as refusal:
            artifacts.load_version_dir(model_dir / refused, signing_keys=keys)
        assert refusal.value.reason == "unsigned"
