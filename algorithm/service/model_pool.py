"""Many named models in one process, kept within a memory budget.

`served` maps each loaded name to its model cache and its own micro-batcher, so a warm model is a
dict lookup away and concurrent requests for one name share its model calls. A name not loaded
is loaded on its first request from the champion its desired state in Redis names, off the event
loop and once however many requests ask at the same time; each of them waits up to
MODEL_LOAD_WAIT_SECONDS, then answers 503 `model_loading` while the load goes on. After every load
the least recently used names are unloaded until what the loaded models cost (memory.py) fits
MODEL_MEMORY_BUDGET_MB, never a pinned name, one a request is using, or one being loaded; a model
larger than the whole budget is served alone. `default` is always here, loaded eagerly as before
names existed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis

from algorithm.service.config import AlgorithmSettings
from algorithm.service.errors import BrokerUnavailable, ModelLoading, ModelNotFound, NoModel
from algorithm.service.memory import files_bytes, release_memory
from algorithm.service.model_cache import ModelCache
from algorithm.service.observability import (
    record_model_loaded,
    record_model_memory,
    record_model_unloaded,
)
from algorithm.service.served_model import ServedModel, serve
from algorithm.service.shadow import ShadowScorer
from core import serving_protocol
from core.model_names import DEFAULT_MODEL
from core.serving_protocol import Desired, ModelReport

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 2  # a cold model still loading, or Redis not answering: try again soon
# Before a name's first load its cost is unknown: its files times this (measured: a version's
# unpickled vocabulary and the predictor's copy of the weights take 2.5 to 3 times its pickles).
FILES_TO_MEMORY = 3


class ModelPool:
    def __init__(
        self,
        default: ServedModel,
        *,
        settings: AlgorithmSettings,
        redis_client: redis.Redis,
        make_cache: Callable[[str], ModelCache],
    ) -> None:
        self.served: dict[str, ServedModel] = {DEFAULT_MODEL: default}
        self.settings = settings
        self.budget = settings.model_memory_budget_bytes
        self.pinned = frozenset(settings.model_pinned)
        self._redis = redis_client
        self._make_cache = make_cache
        self._loading: dict[str, asyncio.Task[ServedModel]] = {}
        self._busy: set[str] = set()  # names whose versions the follower is changing now
        self._sizes: dict[str, int] = {}  # each name's last measured cost: room made before load
        # Names whose champion could not be loaded (seq, champion, error): not tried again until
        # the registry announces again, and reported.
        self._refused: dict[str, tuple[int, str, str]] = {}
        self.on_change: Callable[[], None] = lambda: None  # the follower reports and looks again

    async def acquire(self, name: str) -> ServedModel:
        """The loaded model `name`, loading it first (404, 503 when it cannot be had now)."""
        for _ in range(3):  # evicted between its load and this request's turn: load again
            if (served := self.served.get(name)) is not None:
                return served
            task = self._loading.get(name) or await self._start_load(name)
            done, _ = await asyncio.wait([task], timeout=self.settings.model_load_wait_seconds)
            if not done:
                raise ModelLoading(
                    f"Model {name!r} is being loaded on this replica; try again shortly."
                ).retry_after(RETRY_AFTER_SECONDS)
            served = task.result()
            if self.served.get(name) is served:
                return served
        raise ModelLoading(
            f"Model {name!r} is unloaded as soon as it is loaded: the memory budget holds too "
            "little (MODEL_MEMORY_BUDGET_MB); try again shortly."
        ).retry_after(RETRY_AFTER_SECONDS)

    def start_pinned(self) -> None:
        """Start loading every pinned name other than `default` (which loads eagerly)."""
        for name in self.pinned - {DEFAULT_MODEL} - set(self.served) - set(self._loading):
            task = asyncio.get_running_loop().create_task(self._start_load(name))
            task.add_done_callback(_log_failure)

    def followed(self) -> list[str]:
        """The names whose desired state the follower reads: loaded, and pinned ones."""
        return list(dict.fromkeys([*self.served, *sorted(self.pinned)]))

    async def follow(self, name: str, desired: Desired | None) -> None:
        """Have the loaded model `name` serve what `desired` names (a pinned one: load it)."""
        served = self.served.get(name)
        if served is None:
            if (
                name in self.pinned
                and desired is not None
                and desired.champion is not None
                and name not in self._loading
                and self._refused.get(name, (None,))[0] != desired.seq
            ):
                await self._start_load(name, desired)
            return
        if desired is None and name != DEFAULT_MODEL:
            return  # a name whose key vanished keeps serving what it has
        if _serves(served.cache, desired):
            return  # the usual poll: nothing to load, and the name stays free to unload
        self._busy.add(name)
        try:
            await asyncio.to_thread(served.cache.follow, desired)
        finally:
            self._busy.discard(name)
        memory = served.cache.memory_bytes
        if memory != self._sizes.get(name):
            self._sizes[name] = memory
            record_model_memory(name, memory)
        await self._make_room(0, keep=name)  # also what was skipped while this one loaded

    def reports(self) -> dict[str, ModelReport]:
        """What this process holds of every model (and the names it could not load)."""
        found = {name: served.report() for name, served in self.served.items()}
        for name, (_, version, error) in self._refused.items():
            if name not in found:
                found[name] = ModelReport(
                    version=None, error=error, error_version=version, pinned=name in self.pinned
                )
        return found

    def state(self) -> tuple[object, ...]:
        """Changes when what the process serves changes (the follower then reports at once)."""
        return (
            tuple((n, s.cache.version, s.cache.challenger_version) for n, s in self.served.items()),
            tuple(self._refused),
        )

    def memory_bytes(self) -> int:
        return sum(served.cache.memory_bytes for served in self.served.values())

    async def aclose(self) -> None:
        """Stop the loads in progress and every model's batchers (default's: its owner's)."""
        for task in self._loading.values():
            task.cancel()
        for name, served in list(self.served.items()):
            if name != DEFAULT_MODEL:
                await _close(served)

    async def _start_load(
        self, name: str, desired: Desired | None = None
    ) -> asyncio.Task[ServedModel]:
        """The task loading `name` (a new one unless one runs); 404/503 when it cannot start."""
        if desired is None:
            desired = await self._read_desired(name)
        if (task := self._loading.get(name)) is not None:
            return task  # another request started it while we asked Redis
        refused = self._refused.get(name)
        if refused is not None and refused[:2] == (desired.seq, desired.champion):
            raise ModelLoading(
                f"Version {refused[1]} of model {name!r} could not be loaded on this replica "
                "(see its report); a new champion is loaded when the registry names one."
            ).retry_after(RETRY_AFTER_SECONDS)
        task = asyncio.get_running_loop().create_task(self._load(name, desired))
        self._loading[name] = task
        task.add_done_callback(lambda _: self._loading.pop(name, None))
        task.add_done_callback(_log_failure)
        return task

    async def _read_desired(self, name: str) -> Desired:
        try:
            desired = await asyncio.to_thread(serving_protocol.read_desired, self._redis, name)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(
                f"Redis does not answer, so model {name!r} cannot be looked up: {exc}"
            ).retry_after(RETRY_AFTER_SECONDS) from exc
        if desired is None:
            raise ModelNotFound(f"No model named {name!r}.")
        if desired.champion is None:
            raise NoModel(
                f"Model {name!r} has no champion yet: add labelled rows under it and train it "
                f'(POST /api/train/ with {{"model": "{name}"}}) first.'
            )
        return desired

    async def _load(self, name: str, desired: Desired) -> ServedModel:
        assert desired.champion is not None
        if (loaded := self.served.get(name)) is not None:
            # A request that read Redis while another load of the name ran and finished: that
            # load serves it (loading again would replace it and leak its batchers).
            return loaded
        estimate = self._sizes.get(name) or FILES_TO_MEMORY * files_bytes(
            self.settings.model_root / desired.champion
        )
        await self._make_room(estimate, keep=name)
        cache = self._make_cache(name)
        await asyncio.to_thread(cache.follow, desired)
        if cache.current is None:
            self._refused[name] = (desired.seq, desired.champion, cache.last_error or "not loaded")
            self.on_change()
            raise ModelLoading(
                f"Version {desired.champion} of model {name!r} could not be loaded on this "
                "replica (see its report)."
            ).retry_after(RETRY_AFTER_SECONDS)
        self._refused.pop(name, None)
        shadow = None
        if self.settings.shadow_fraction > 0:
            shadow = ShadowScorer(
                cache,
                fraction=self.settings.shadow_fraction,
                queue_size=self.settings.shadow_queue_size,
            )
            await shadow.start()
        served = serve(cache, self.settings, pinned=name in self.pinned, shadow=shadow)
        self.served[name] = served
        self._sizes[name] = cache.memory_bytes
        record_model_loaded(name, cache.memory_bytes)
        log.info("loaded model %s version %s (%d bytes)", name, cache.version, cache.memory_bytes)
        await self._make_room(0, keep=name)
        self.on_change()
        return served

    async def _make_room(self, needed: int, *, keep: str) -> None:
        """Unload least recently used models until `needed` more bytes fit the budget."""
        if self.budget is None:
            return
        while self.memory_bytes() + needed > self.budget:
            victims = [
                served
                for name, served in self.served.items()
                if not served.pinned
                and served.users == 0
                and name != keep
                and name not in self._busy
                and name not in self._loading
            ]
            if not victims:
                return  # what is left is pinned or in use: over budget until it is not
            await self._unload(min(victims, key=lambda served: served.last_used))

    async def _unload(self, served: ServedModel) -> None:
        del self.served[served.name]
        version = served.cache.version
        log.info("unloading model %s version %s to stay within the budget", served.name, version)
        await _close(served)
        served.cache.drop()
        record_model_unloaded(served.name, version)
        self.on_change()
        await asyncio.to_thread(release_memory)


def _serves(cache: ModelCache, desired: Desired | None) -> bool:
    """Whether `cache` serves exactly what `desired` names, with no error left to clear."""
    return (
        desired is not None
        and desired.champion is not None  # none named: `default` follows `current`
        and cache.last_error is None
        and desired.champion == cache.version
        and (not cache.keep_challenger or desired.challenger == cache.challenger_version)
    )


async def _close(served: ServedModel) -> None:
    if served.shadow is not None:
        await served.shadow.aclose()
    await served.batcher.close()
    await served.challenger_batcher.close()


def _log_failure(task: asyncio.Task[object]) -> None:
    """A load nobody waits for any more still has its failure logged (and retrieved)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, ModelLoading | ModelNotFound | NoModel):
        log.error("loading a model failed: %s", error, exc_info=error)
