"""Sending training tasks to the worker's queue, by name.

The task's name is the whole contract (`core.jobs.TRAIN_TASK`): the worker registers its task under
it, and
the algorithm service sends to that name through a Celery app that is configured only to send
(broker, serializer), so the service never imports the task or anything that trains. The
request's id travels as a message header (`request_id`), not as an argument of the task.
"""

from __future__ import annotations

import logging

from celery import Celery

from core.jobs import REQUEST_ID_TASK_HEADER, TRAIN_TASK
from core.logs import REQUEST_ID
from core.model_names import DEFAULT_MODEL

log = logging.getLogger(__name__)


class TrainingQueue:
    """Puts training jobs on the Celery queue in Redis; `enqueue` is what the job store calls."""

    def __init__(self, broker_url: str) -> None:
        self._app = Celery("textclf-sender", set_as_current=False)
        self._app.conf.update(
            broker_url=broker_url,
            task_serializer="json",
            accept_content=["json"],
        )

    def enqueue(self, job_id: str, model: str = DEFAULT_MODEL) -> None:
        """Send the training task for job_id of `model`, with the current request's id as a
        header.

        `default`'s message is the one sent before names existed (no kwargs: the worker reads
        the job's model), so a worker not yet upgraded still runs it during a rolling upgrade.
        """
        request_id = REQUEST_ID.get()
        headers = {REQUEST_ID_TASK_HEADER: request_id} if request_id else None
        kwargs = None if model == DEFAULT_MODEL else {"model": model}
        self._app.send_task(TRAIN_TASK, args=[job_id], kwargs=kwargs, headers=headers)
        log.info("queued the training of job %s (model %s)", job_id, model)

    def close(self) -> None:
        """Release the broker connections."""
        self._app.close()
