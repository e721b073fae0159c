"""The model volume's `current` link follows the registry's champion, even while a training runs.

The pool's child process runs one training at a time, so a champion move must not be a task
queued behind it. The worker's main process runs a daemon thread instead, started when the
worker is ready: subscribed to `textclf:registry:changed`, it reads the desired state on start,
after every reconnect, on every message and every `poll_seconds`, and points `current` at the
champion (one atomic symlink replace) when the champion is another version present on the
volume. Only the worker writes the volume; the algorithm processes load by name from the
desired state and read `current` only as their fallback.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import redis

from algorithm.ml import artifacts
from core import serving_protocol
from core.serving_protocol import Desired

log = logging.getLogger(__name__)
RECONNECT_MAX_SECONDS = 5.0


def mirror_champion(model_root: Path, desired: Desired | None) -> bool:
    """Point `current` at the desired champion if it names another present version; True if so."""
    champion = desired.champion if desired else None
    if champion is None or artifacts.current_version_name(model_root) == champion:
        return False
    if not artifacts.VERSION_PATTERN.match(champion) or not (model_root / champion).is_dir():
        log.warning("champion %r is not a version under %s; `current` stays", champion, model_root)
        return False
    artifacts.switch_current(model_root, champion)
    log.info("`current` now names champion %s", champion)
    return True


class LinkFollower:
    def __init__(self, model_root: Path, redis_url: str, *, poll_seconds: float = 1.0) -> None:
        self.model_root = model_root
        self.poll_seconds = poll_seconds
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-follower", daemon=True)
        self._backoff = 0.1

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._redis.close()

    def reconcile(self) -> None:
        """Mirror the champion the registry wants now."""
        mirror_champion(self.model_root, serving_protocol.read_desired(self._redis))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (redis.RedisError, OSError) as exc:
                log.warning("link follower: %s; retrying in %.1f s", exc, self._backoff)
            except Exception:  # the thread must outlive any surprise
                log.exception("link follower failed; retrying in %.1f s", self._backoff)
            self._stopping.wait(self._backoff)
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_SECONDS)

    def _follow(self) -> None:
        with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.subscribe(serving_protocol.CHANGED_CHANNEL)
            self._backoff = 0.1
            while not self._stopping.is_set():
                self.reconcile()  # after (re)subscribing, after a message, or once a poll
                pubsub.get_message(timeout=self.poll_seconds)
