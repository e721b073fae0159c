"""MODEL_SIGNING_KEY: make run keeps one for the services; without one they refuse to start."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from algorithm.service.config import AlgorithmSettings
from core.harness.run import service_env
from core.harness.settings import StackSettings
from worker.config import WorkerSettings


def test_make_run_keeps_one_key_owner_only_and_gives_it_to_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_SIGNING_KEY")
    first = service_env(StackSettings(var_dir=tmp_path), {})["MODEL_SIGNING_KEY"]
    kept = tmp_path / "model_signing_key"
    assert kept.read_text() == first and kept.stat().st_mode & 0o777 == 0o600
    assert service_env(StackSettings(var_dir=tmp_path), {})["MODEL_SIGNING_KEY"] == first  # kept
    chosen = secrets.token_urlsafe(32)
    monkeypatch.setenv("MODEL_SIGNING_KEY", chosen)
    assert service_env(StackSettings(var_dir=tmp_path), {})["MODEL_SIGNING_KEY"] == chosen


@pytest.mark.parametrize("settings", [AlgorithmSettings, WorkerSettings])
def test_a_missing_or_short_key_is_refused_without_printing_it(
    settings: type[AlgorithmSettings | WorkerSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    monkeypatch.setenv("MODEL_SIGNING_KEY", f" {new} ,{old},")
    assert settings().model_signing_key == (new, old)  # new signs, both verify
    for value in ("", "a-short-signing-key", f"{new},short"):
        monkeypatch.setenv("MODEL_SIGNING_KEY", value)
        with pytest.raises(ValidationError, match="MODEL_SIGNING_KEY") as refused:
            settings()
        assert all(key not in str(refused.value) for key in value.split(",") if key)
