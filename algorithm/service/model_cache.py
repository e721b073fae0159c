"""The serving models, kept in memory and swapped when the registry names other versions.

`follow(desired)` loads the champion the registry wants (and the challenger, for shadow scoring)
by name from the artifact store (algorithm/ml/store.py: the model volume's `<version>/`, or this
host's verified cache of the object store, downloaded first if needed), verified as published;
without a desired state (a fresh install, Redis flushed or down) `refresh()` follows the volume's
`current` link, found by a cheap `stat` (an object store has none: the model served stays).
Both block on file reads: the service calls them off its event loop, one at a time. A new model
is swapped in with one attribute assignment: a request sees the old model or the new one, never a
mix. A version that fails to load (unsigned, signed with another key, changed on the volume, ...)
is logged, counted by reason and reported; the old one keeps serving, and it is not retried until
the registry announces again (no re-reading a corrupt file every poll), except when the store did
not answer: that is tried again on the next look.

One cache serves one model name: `default` also follows the volume's `current` link; any other
name is served from its desired state only. Every version loaded is measured (memory.py), so the
pool of named models (model_pool.py) knows what each name costs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algorithm.ml import artifacts
from algorithm.ml.signing import SigningKeys
from algorithm.ml.store import TRANSIENT_REASONS, ArtifactStore, FilesystemStore
from algorithm.ml.training import FastPredictor
from algorithm.service.memory import files_bytes, measured
from algorithm.service.observability import (
    record_refused_load,
    record_reload,
    record_served_version,
)
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    version: str
    manifest: dict[str, Any]
    predictor: FastPredictor
    memory_bytes: int = 0  # what loading it added to the process (memory.py)

    @property
    def label_count(self) -> int:
        """How many labels the model can answer: the largest `top_k` it serves."""
        return len(self.predictor.model.classifier.classes_)


def load_named_version(
    store: ArtifactStore, version: str, *, signing_keys: SigningKeys, keep: tuple[str, ...] = ()
) -> artifacts.LoadedVersion:
    """Load `version` from the store, verified like `current` (ArtifactError when it cannot).

    A cached copy that fails to load (changed on this host's disk, or evicted by another process
    meanwhile) is dropped and fetched again, once.
    """
    return _load_named_version(store, version, signing_keys=signing_keys, keep=keep)[0]


def _load_named_version(
    store: ArtifactStore, version: str, *, signing_keys: SigningKeys, keep: tuple[str, ...] = ()
) -> tuple[artifacts.LoadedVersion, Path]:
    for attempt in (1, 2):
        version_dir = store.version_dir(version, signing_keys=signing_keys, keep=keep)
        try:
            return artifacts.load_version_dir(version_dir, signing_keys=signing_keys), version_dir
        except artifacts.ArtifactError:
            store.forget(version)
            # A cached copy changed or evicted under us is fetched once more; the volume's
            # copy is the only one.
            if attempt == 2 or store.follows_current_link:
                raise
    raise AssertionError("unreachable")


def _serving(
    load: Callable[[], tuple[artifacts.LoadedVersion, Path]],
) -> ServingModel:
    """The version `load` reads, ready to predict, with the memory it added to the process."""

    def build() -> tuple[artifacts.LoadedVersion, FastPredictor, Path]:
        loaded, version_dir = load()
        return loaded, FastPredictor(loaded.model), version_dir

    (loaded, predictor, _), memory = measured(build, floor=lambda built: files_bytes(built[2]))
    return ServingModel(
        version=loaded.version, manifest=loaded.manifest, predictor=predictor, memory_bytes=memory
    )


class ModelCache:
    def __init__(
        self,
        model_root: Path,
        *,
        signing_keys: SigningKeys,
        keep_challenger: bool = False,
        store: ArtifactStore | None = None,
        model: str = DEFAULT_MODEL,
    ) -> None:
        self.model = model
        self.model_root = model_root
        self.store = store if store is not None else FilesystemStore(model_root)
        self.signing_keys = signing_keys  # a manifest no key here signed is never trusted
        self.keep_challenger = keep_challenger  # only shadow scoring needs the challenger
        self.current: ServingModel | None = None
        self.challenger: ServingModel | None = None
        self.last_error: str | None = None
        self.error_version: str | None = None
        self.loaded_at: str | None = None
        self.load_attempts = 0  # so the follower can report after every attempt
        # The champion the registry last named (None: none announced yet): GET /health/started.
        self.desired_champion: str | None = None
        self._signature: tuple[str, int, int] | None = None
        self._failed: set[tuple[str, int]] = set()  # (version, seq) loads that failed

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    @property
    def challenger_version(self) -> str | None:
        return self.challenger.version if self.challenger else None

    @property
    def memory_bytes(self) -> int:
        """What the versions held here cost (the champion, and a challenger other than it)."""
        held = {id(m): m.memory_bytes for m in (self.current, self.challenger) if m is not None}
        return sum(held.values())

    def drop(self) -> None:
        """Let go of every version held (the pool unloads this model)."""
        self.current = self.challenger = None

    def follow(self, desired: Desired | None) -> bool:
        """Serve what `desired` names, else what `current` names; True when the champion moved."""
        if desired is None or desired.champion is None:
            return self.refresh()
        self.desired_champion = desired.champion
        moved = self._load_champion(desired.champion, desired.seq)
        if self.keep_challenger:
            self._load_challenger(desired.challenger, desired.seq)
        if self.version == desired.champion and (
            not self.keep_challenger or self.challenger_version == desired.challenger
        ):
            self.last_error = self.error_version = None
        return moved

    @property
    def started(self) -> bool:
        """Whether this process serves the champion the registry names (or none is named yet)."""
        return self.desired_champion is None or self.version == self.desired_champion

    def refresh(self) -> bool:
        """Load `current` if it moved since the last look; True when a new model was swapped in.

        Only `default` follows the link: another name is served from its desired state only.
        """
        if not self.store.follows_current_link or self.model != DEFAULT_MODEL:
            return False
        signature = artifacts.current_signature(self.model_root)
        if signature == self._signature:
            return False
        self._signature = signature  # a failed version is not retried until `current` moves
        if signature is None:
            return False  # nothing published (or unpublished by hand): keep what we serve
        self.load_attempts += 1
        root = self.model_root

        def load() -> tuple[artifacts.LoadedVersion, Path]:
            found = artifacts.resolve_current(root)
            return artifacts.load_version_dir(found, signing_keys=self.signing_keys), found

        try:
            loaded = _serving(load)
        except artifacts.NoPublishedModel:
            return False  # `current` vanished since the stat: as if nothing were published
        except artifacts.ArtifactError as exc:
            self._record_failure(signature[0], exc)
            return False
        if self.current is not None and loaded.version == self.current.version:
            return False
        self._swap_champion(loaded)
        self.last_error = self.error_version = None
        return True

    def _load_champion(self, version: str, seq: int) -> bool:
        if version == self.version or (version, seq) in self._failed:
            return False
        if version == self.challenger_version and self.challenger is not None:
            self._swap_champion(self.challenger)  # a challenger promoted: already in memory
            return True
        loaded = self._load(version, seq)
        if loaded is None:
            return False
        self._swap_champion(loaded)
        return True

    def _load_challenger(self, version: str | None, seq: int) -> None:
        if version == self.challenger_version or (version, seq) in self._failed:
            return
        if version is None:
            self.challenger = None
        elif version == self.version:
            self.challenger = self.current
        elif (loaded := self._load(version, seq)) is not None:
            self.challenger = loaded
            log.info("shadow scoring with challenger %s", version)

    def _load(self, version: str, seq: int) -> ServingModel | None:
        self.load_attempts += 1
        served = tuple(name for name in (self.version, self.challenger_version) if name)
        try:
            return _serving(
                lambda: _load_named_version(
                    self.store, version, signing_keys=self.signing_keys, keep=served
                )
            )
        except artifacts.ArtifactError as exc:
            if exc.reason not in TRANSIENT_REASONS:
                self._failed.add((version, seq))
            self._record_failure(version, exc)
            return None

    def _swap_champion(self, model: ServingModel) -> None:
        previous = self.version
        self.current = model
        self.loaded_at = utc_now()
        log.info("serving model %s version %s", self.model, model.version)
        record_reload(succeeded=True)
        record_served_version(self.model, previous, model.version)

    def _record_failure(self, version: str, exc: artifacts.ArtifactError) -> None:
        self.last_error = str(exc)
        self.error_version = version
        log.error(
            "cannot load version %s of model %s, keeping %s: %s",
            version,
            self.model,
            self.version,
            exc,
        )
        record_reload(succeeded=False)
        record_refused_load(exc.reason)
