"""Settings every service shares, read from the environment once (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Where state lives and how to reach the shared servers."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    var_dir: Path = Path("var")
    # Ports of the embedded servers `make run` starts when the URLs below are not set.
    embedded_postgres_port: int = 54329
    embedded_redis_port: int = 63799
    database_url: str = ""  # default: the embedded PostgreSQL
    redis_url: str = ""  # default: the embedded Redis
    model_dir: Path | None = None  # default: $VAR_DIR/models

    @model_validator(mode="after")
    def _derive_defaults(self) -> CommonSettings:
        defaults = {
            "database_url": f"postgresql://postgres@127.0.0.1:{self.embedded_postgres_port}/textclf",
            "redis_url": f"redis://127.0.0.1:{self.embedded_redis_port}/0",
            "model_dir": self.var_dir / "models",
        }
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)  # the model is frozen once built
        return self

    @property
    def model_root(self) -> Path:
        assert self.model_dir is not None
        return self.model_dir
