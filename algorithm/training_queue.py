"""Sending training tasks to the worker's queue, by name.

The task's name is the whole contract: the worker registers its task under `TRAIN_TASK`, and
the algorithm service sends to that name through a Celery app that is configured only to send
(broker, serializer), so the service never imports the task or anything that trains.
"""

from __future__ import annotations

from celery import Celery

TRAIN_TASK = "textclf.train"


class TrainingQueue:
    """Puts training jobs on the Celery queue in Redis; `enqueue` is what the job store calls."""

    def __init__(self, broker_url: str) -> None:
        self._app = Celery("textclf-sender", set_as_current=False)
        self._app.conf.update(
            broker_url=broker_url,
            task_serializer="json",
            accept_content=["json"],
        )

    def enqueue(self, job_id: str) -> None:
        """Send the training task for job_id."""
        self._app.send_task(TRAIN_TASK, args=[job_id])

    def close(self) -> None:
        """Release the broker connections."""
        self._app.close()
