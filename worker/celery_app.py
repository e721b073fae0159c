"""The Celery app, built from WorkerSettings; `celery -A worker.celery_app worker` runs it.

The algorithm service sends the training task by name (algorithm.service.training_queue); this is
the
app that receives it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from worker.config import WorkerSettings, get_settings
from worker.link_follower import LinkFollower


def make_celery(settings: WorkerSettings) -> Celery:
    """Build the Celery app: Redis broker and result backend, late acks, one task at a time."""
    app = Celery("textclf", include=["worker.tasks"])
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        result_expires=24 * 3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task is acknowledged when it ends, and requeued when its process dies mid-way.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        # A fresh process per training returns a large model's memory to the system.
        worker_max_tasks_per_child=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            # Redelivery of a dead worker's task: look every interval (kombu's default is only
            # every tenth interval).
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
            # A worker killed while it looks holds kombu's restore lock until it expires (kombu's
            # default: 5 minutes), and no worker redelivers anything until then. The look takes
            # milliseconds; a few intervals is plenty.
            "unacked_mutex_expire": max(30, 3 * settings.broker_restore_interval),
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
    )
    return app


celery_app = make_celery(get_settings())


_link_followers: list[LinkFollower] = []


@worker_ready.connect
def start_link_follower(**_: Any) -> None:
    """In the worker's main process: `current` follows the champion while the pool trains.

    Not with an object store: no algorithm process reads a `current` link then, and this host's
    volume holds only what it published itself.
    """
    settings = get_settings()
    if settings.model_store_url:
        return
    follower = LinkFollower(settings.model_root, settings.redis_url)
    follower.start()
    _link_followers.append(follower)


@worker_shutdown.connect
def stop_link_follower(**_: Any) -> None:
    while _link_followers:
        _link_followers.pop().stop()


from worker import observability  # noqa: E402, F401  (connects its signal handlers)
