"""Actors that work bulk imports. A message is a doorbell, not the data: the database holds the work."""

from __future__ import annotations

import logging

from actors import runtime
from actors.broker import actor
from scholarise import processing
from scholarise.errors import ScholariseError

logger = logging.getLogger(__name__)


class NotQueuedError(ScholariseError):
    """The work is stored but no doorbell could be rung (the broker does not answer).

    Nothing is lost: the rows are pending in the database, and recovery (the health probe, a
    starting embedded worker, ``scholarise resume``) rings for waiting work again.

    Attributes:
        task_id: the stored task.
        reason: why the broker refused, e.g. ``ConnectionError: Error 111 connecting to ...``.
    """

    def __init__(self, task_id: int | None, reason: str) -> None:
        what = f"Task #{task_id}" if task_id is not None else "The work"
        super().__init__(f"{what} is stored but could not be queued ({reason}); it starts when the broker is back "
                         "(the health probe re-queues waiting work)")
        self.task_id = task_id
        self.reason = reason


# A batch fits well inside one message's time limit; transient provider outages are retried by
# Dramatiq with backoff, and if a message is ever dropped the rows are still pending in the database.
@actor(actor_name="process_batch", queue_name="imports", max_retries=20, min_backoff=2_000,
       max_backoff=300_000, time_limit=300_000)
def process_batch(task_hint: int | None = None) -> None:
    """Work the most urgent batch (any task; ``task_hint`` is only for logs), then ring again if work was done."""
    result = processing.process_next_batch(runtime.current().work_context())
    if result.more_work:
        process_batch.send(result.task_id)


def ring(task_id: int | None, doorbells: int = 1) -> None:
    """Enqueue doorbells for a task: one per batch a worker may work on at once.

    Raises:
        NotQueuedError: not even one doorbell could be enqueued (the task itself is safe in the database).
    """
    for rung in range(max(1, doorbells)):
        try:
            process_batch.send(task_id)
        except Exception as exc:  # noqa: BLE001 - any broker failure; re-raised with what it means for the task
            if rung:  # one doorbell is enough to start the work; the worker rings on for the rest
                logger.warning("task %s: %d of %d doorbells rung; the broker refused the rest: %s", task_id, rung,
                               doorbells, exc)
                return
            raise NotQueuedError(task_id, f"{type(exc).__name__}: {exc}") from exc
