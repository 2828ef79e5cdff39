"""Actors that work bulk imports. A message is a doorbell, not the data: the database holds the work."""

from __future__ import annotations

import logging

from actors import runtime
from actors.broker import actor
from scholarise import processing

logger = logging.getLogger(__name__)

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
    """Enqueue doorbells for a task: one per batch a worker may work on at once."""
    for _ in range(max(1, doorbells)):
        process_batch.send(task_id)
