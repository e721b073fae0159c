"""Shared settings: defaults derived from other settings, for every service that builds on them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from algorithm.service.config import AlgorithmSettings
from core.harness.settings import StackSettings
from core.settings import CommonSettings
from web.config import WebSettings
from worker.config import WorkerSettings

SERVICE_SETTINGS = [CommonSettings, StackSettings, WebSettings, AlgorithmSettings, WorkerSettings]


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets (the session sets the URLs for the embedded test servers)."""
    for name in ("DATABASE_URL", "REDIS_URL", "VAR_DIR", "MODEL_DIR", "ALGORITHM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "DJANGO_SECRET_KEY", "a-long-random-value-that-is-not-a-placeholder-" + "q" * 16
    )


@pytest.mark.parametrize("settings_class", SERVICE_SETTINGS)
def test_unset_urls_and_model_dir_follow_the_embedded_ports_and_var_dir(
    settings_class: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAR_DIR", "/srv/textclf")
    monkeypatch.setenv("EMBEDDED_POSTGRES_PORT", "5544")
    monkeypatch.setenv("EMBEDDED_REDIS_PORT", "6655")

    settings = settings_class()

    assert settings.database_url == "postgresql://postgres@127.0.0.1:5544/textclf"
    assert settings.redis_url == "redis://127.0.0.1:6655/0"
    assert settings.model_dir == settings.model_root == Path("/srv/textclf/models")


@pytest.mark.parametrize("settings_class", SERVICE_SETTINGS)
def test_set_values_win_and_empty_ones_mean_the_default(
    settings_class: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/app")
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("MODEL_DIR", "/models")

    settings = settings_class()

    assert settings.database_url == "postgresql://app@db:5432/app"
    assert settings.redis_url == "redis://127.0.0.1:63799/0"
    assert settings.model_dir == Path("/models")


def test_make_run_starts_embedded_servers_only_for_urls_left_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/app")

    settings = StackSettings()

    assert not settings.uses_embedded("database")
    assert settings.uses_embedded("redis")


def test_web_is_told_where_the_stack_starts_the_algorithm_service_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALGORITHM_HOST", "127.0.0.2")
    monkeypatch.setenv("ALGORITHM_PORT", "9101")
    assert StackSettings().algorithm_url == "http://127.0.0.2:9101"

    monkeypatch.setenv("ALGORITHM_URL", "http://models.internal:8001")
    assert StackSettings().algorithm_url == "http://models.internal:8001"


def test_settings_cannot_be_changed_once_read() -> None:
    settings = StackSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.web_port = 9000


# Settings that several services read are declared once (core/settings.py): each reader takes the
# same variable, with the same default and the same rule. (variable, default, a value it takes, a
# value it refuses, the services that read it.)
SHARED_SETTINGS = [
    ("PREDICT_MAX_TEXTS", 1000, "7", "many", [WebSettings, AlgorithmSettings]),
    ("PREDICT_MAX_CHARS", 100_000, "70", "many", [WebSettings, AlgorithmSettings]),
    ("PREDICT_MAX_TOTAL_CHARS", 10_000_000, "700", "0", [WebSettings, AlgorithmSettings]),
    ("PREDICT_MAX_TOP_K", 100, "3", "0", [WebSettings, AlgorithmSettings]),
    ("PROMOTION_TOLERANCE", 0.01, "0.5", "-0.1", [WebSettings, WorkerSettings]),
    ("MODEL_RETENTION", 5, "2", "0", [WebSettings, WorkerSettings]),
    ("JOB_TTL_SECONDS", 7 * 24 * 3600, "120", "0", [AlgorithmSettings, WorkerSettings]),
]


@pytest.mark.parametrize(("variable", "default", "value", "refused", "readers"), SHARED_SETTINGS)
def test_a_setting_several_services_read_has_one_name_default_and_rule(
    variable: str,
    default: object,
    value: str,
    refused: str,
    readers: list[type[CommonSettings]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    field = variable.lower()
    for reader in readers:
        assert getattr(reader(), field) == default, reader.__name__
    monkeypatch.setenv(variable, value)
    for reader in readers:
        assert str(getattr(reader(), field)) == value, reader.__name__
    monkeypatch.setenv(variable, refused)
    for reader in readers:
        with pytest.raises(ValidationError, match=field):
            reader()
    # A service that does not read it starts whatever it says.
    for other in set(SERVICE_SETTINGS) - set(readers):
        assert not hasattr(other(), field), other.__name__
