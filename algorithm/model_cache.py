"""The serving model, kept in memory and swapped when a new version is published.

A poller on the service's event loop `stat`s the `current` link every `poll_ms` (no file reads
on the request path). When it changes, the new version is loaded and verified in a worker
thread, then swapped in with one attribute assignment: a request sees the old model or the new
one, never a mix. A version that fails to load is logged and reported; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algorithm import artifacts
from algorithm.errors import NoModel
from algorithm.ml import FastPredictor
from algorithm.observability import record_reload, record_served_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    version: str
    manifest: dict[str, Any]
    predictor: FastPredictor

    @property
    def label_count(self) -> int:
        """How many labels the model can answer: the largest `top_k` it serves."""
        return len(self.predictor.model.classifier.classes_)


class ModelCache:
    def __init__(self, model_root: Path, *, poll_ms: int) -> None:
        self.model_root = model_root
        self.poll_seconds = poll_ms / 1000
        self.current: ServingModel | None = None
        self.last_error: str | None = None
        self._signature: tuple[str, int, int] | None = None

    def refresh(self) -> bool:
        """Load `current` if it moved since the last look; True when a new model was swapped in."""
        signature = artifacts.current_signature(self.model_root)
        if signature == self._signature:
            return False
        self._signature = signature  # a failed version is not retried until `current` moves
        if signature is None:
            return False  # nothing published (or unpublished by hand): keep what we serve
        try:
            loaded = artifacts.load_current_version(self.model_root)
        except NoModel:
            return False  # `current` vanished since the stat: as if nothing were published
        except artifacts.ArtifactError as exc:
            self.last_error = str(exc)
            log.error("keeping model %s: %s", self.version, exc)
            record_reload(succeeded=False)
            return False
        previous = self.version
        self.current = ServingModel(
            version=loaded.version,
            manifest=loaded.manifest,
            predictor=FastPredictor(loaded.model),
        )
        self.last_error = None
        log.info("serving model version %s", loaded.version)
        record_reload(succeeded=True)
        record_served_version(previous, loaded.version)
        return True

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    async def watch(self) -> None:
        """Poll for new versions forever, loading them off the event loop."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # the poller must outlive any surprise
                log.exception("model poll failed")
