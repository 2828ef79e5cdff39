"""The Python API other apps use: submit work and read its state.

Mirrors the original system's ``backgroundTaskService.createTask(type, title, description, payload)``.
Call :func:`actors.configure` once per process first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from actors import runtime
from actors.imports import ring
from scholarise import tasks as task_service
from scholarise.csvfile import ParsedRow
from scholarise.db import session_scope
from scholarise.models import BackgroundTask, TaskStatus


def create_bulk_task(task_type: str, title: str, description: str, payload: Mapping[str, Any], *,
                     created_by: str | None = None, rows: Iterable[ParsedRow] | None = None) -> int:
    """Store a bulk task and ring the workers; returns the task id.

    Raises:
        scholarise.errors.InputError: the payload cannot be used (nothing stored).
    """
    rt = runtime.current()
    with session_scope(rt.session_factory) as session:
        task = task_service.create_bulk_task(session, task_type, title, description, payload,
                                             created_by=created_by, rows=rows, max_rows=rt.settings.max_rows)
        task_id, pending = task.id, task.total - task.failed_count
        batch = int(task.options.get("batch_size") or rt.settings.batch_size)
    ring(task_id, min(rt.settings.worker_threads, max(1, math.ceil(pending / batch))))
    return task_id


def get_task(task_id: int) -> dict[str, Any]:
    """The task's summary with its failed rows.

    Raises:
        scholarise.errors.NotFoundError: no such task.
    """
    with session_scope(runtime.current().session_factory) as session:
        task = task_service.get_task(session, task_id)
        return task_service.summary(task, task_service.failed_items(session, task_id))


def live_worker_count() -> int:
    """How many worker processes beat within the heartbeat timeout, on every machine."""
    from scholarise.heartbeats import live_worker_count as count

    rt = runtime.current()
    with session_scope(rt.session_factory) as session:
        return count(session, timeout=rt.settings.heartbeat_timeout)


def get_all_tasks(*, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest tasks first, optionally of one status."""
    with session_scope(runtime.current().session_factory) as session:
        query = select(BackgroundTask).order_by(BackgroundTask.created_at.desc(), BackgroundTask.id.desc()).limit(limit)
        if status:
            query = query.where(BackgroundTask.status == status)
        return [task_service.summary(t) for t in session.scalars(query)]


def cancel_task(task_id: int, *, by: str | None = None) -> dict[str, Any]:
    """Cancel a pending or running task (honoured between batches)."""
    with session_scope(runtime.current().session_factory) as session:
        return task_service.summary(task_service.cancel_task(session, task_id, by=by))


def retry_failed_rows(task_id: int, *, by: str | None = None) -> int:
    """Queue a finished task's failed rows again and ring the workers; returns how many."""
    with session_scope(runtime.current().session_factory) as session:
        count = task_service.retry_failed_rows(session, task_id, by=by)
    ring(task_id, runtime.current().settings.worker_threads)
    return count


def resume_task(task_id: int) -> int:
    """Release rows held by a stopped worker and ring again; returns how many rows were released."""
    from scholarise.claims import resume_task as release

    with session_scope(runtime.current().session_factory) as session:
        count = release(session, task_id)
    ring(task_id, runtime.current().settings.worker_threads)
    return count


def wait_for_task(task_id: int, *, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
    """Block until the task has finished; returns its summary.

    Raises:
        TimeoutError: still not finished after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        summary = get_task(task_id)
        if summary["status"] in TaskStatus.FINISHED:
            return summary
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Task #{task_id} is still {summary['status'].lower()} after {timeout} s.")
        time.sleep(poll)
