"""The embedded mode after a restart: work left in the database is picked up with no message to carry it."""

from __future__ import annotations

import socket

from sqlalchemy import update

import actors
from actors import runtime
from actors.embedded import start_worker
from scholarise.db import session_scope
from scholarise.models import ItemStatus, TaskItem, TaskStatus, utcnow


def people(n: int) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "T", "email": f"p{i}@example.org"} for i in range(n)]


def test_a_restarted_process_finishes_tasks_whose_messages_were_lost(broker):
    task_id = actors.create_bulk_task("BULK_USER_CREATION", "Lost bells", "", {
        "type": "teacher", "branch": "Main", "items": people(25)})
    broker.flush_all()  # the process died: the in-memory queue is gone, the rows are not
    # ... and rows it had claimed belong to a process id that no longer runs on this host
    with session_scope(runtime.current().session_factory) as session:
        session.execute(update(TaskItem).where(TaskItem.row_number <= 5).values(
            status=ItemStatus.PROCESSING, claim_token="dead", claimed_by=f"{socket.gethostname()}:999999999",
            claimed_at=utcnow()))
    worker = start_worker(threads=2)
    try:
        summary = actors.wait_for_task(task_id, timeout=60, poll=0.05)
    finally:
        worker.stop()
    assert (summary["status"], summary["created"]) == (TaskStatus.COMPLETED, 25)


def test_a_task_queued_by_another_process_is_started_by_the_running_worker(broker):
    from scholarise import tasks

    worker = start_worker(threads=2)
    try:
        # another process (the CLI) stores a task; its doorbell rang in that process's own broker
        with session_scope(runtime.current().session_factory) as session:
            task_id = tasks.create_bulk_task(session, "BULK_USER_CREATION", "From the CLI", "", {
                "type": "teacher", "branch": "Main", "items": people(12)}).id
        summary = actors.wait_for_task(task_id, timeout=30, poll=0.1)
    finally:
        worker.stop()
    assert (summary["status"], summary["created"]) == (TaskStatus.COMPLETED, 12)


def test_restarting_the_embedded_worker_does_not_stack_middleware(broker):
    before = len(broker.middleware)
    for _ in range(3):
        start_worker(threads=1).stop()
    assert len(broker.middleware) == before
