"""Read-only views of the work for people: a task's rows and log, recent tasks, throughput over time.

Every function takes an optional ``branch_id`` (None = all branches) so a caller can limit what
a staff member sees to their own branch without writing its own query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, cast, func, select
from sqlalchemy.orm import Session

from scholarise.models import BackgroundTask, ItemStatus, TaskExecutionLog, TaskItem, TaskStatus, utcnow

ROW_FILTERS = ("all", "failed", "created", "existing", "pending", "cancelled")


def _scoped(query: Any, branch_id: int | None) -> Any:
    return query if branch_id is None else query.where(BackgroundTask.branch_id == branch_id)


def task_rows(session: Session, task_id: int, *, status: str = "all", offset: int = 0,
              limit: int = 100) -> tuple[list[TaskItem], int]:
    """One page of the task's rows in file order, optionally of one status; also how many match."""
    where = [TaskItem.task_id == task_id]
    if status == "pending":
        where.append(TaskItem.status.in_(ItemStatus.OPEN))
    elif status in ROW_FILTERS and status != "all":
        where.append(TaskItem.status == status)
    count = session.scalar(select(func.count()).select_from(TaskItem).where(*where)) or 0
    rows = session.scalars(select(TaskItem).where(*where).order_by(TaskItem.row_number).offset(offset).limit(limit))
    return list(rows), count


def task_log(session: Session, task_id: int, *, limit: int = 200) -> list[TaskExecutionLog]:
    """The task's newest log lines, newest first."""
    query = (select(TaskExecutionLog).where(TaskExecutionLog.task_id == task_id)
             .order_by(TaskExecutionLog.created_at.desc(), TaskExecutionLog.id.desc()).limit(limit))
    return list(session.scalars(query))


def active_tasks(session: Session, *, branch_id: int | None = None, limit: int = 20) -> list[BackgroundTask]:
    """Pending and running tasks, in the order workers take them (priority, then oldest)."""
    query = (select(BackgroundTask).where(BackgroundTask.status.in_(TaskStatus.ACTIVE))
             .order_by(BackgroundTask.priority, BackgroundTask.created_at, BackgroundTask.id).limit(limit))
    return list(session.scalars(_scoped(query, branch_id)))


def recent_finished_tasks(session: Session, *, branch_id: int | None = None, limit: int = 5) -> list[BackgroundTask]:
    """The most recently finished tasks, newest first."""
    query = (select(BackgroundTask).where(BackgroundTask.status.in_(TaskStatus.FINISHED))
             .order_by(BackgroundTask.finished_at.desc(), BackgroundTask.id.desc()).limit(limit))
    return list(session.scalars(_scoped(query, branch_id)))


def status_counts(session: Session, *, branch_id: int | None = None, since: datetime | None = None) -> dict[str, int]:
    """How many tasks are in each status (created since ``since``, if given)."""
    query = select(BackgroundTask.status, func.count()).group_by(BackgroundTask.status)
    if since is not None:
        query = query.where(BackgroundTask.created_at >= since)
    counts = dict.fromkeys(TaskStatus.ALL, 0)
    counts.update({status: n for status, n in session.execute(_scoped(query, branch_id))})
    return counts


def pending_rows(session: Session, *, branch_id: int | None = None) -> int:
    """Rows still waiting for a worker, across active tasks."""
    query = (select(func.count()).select_from(TaskItem).join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
             .where(TaskItem.status.in_(ItemStatus.OPEN), BackgroundTask.status.in_(TaskStatus.ACTIVE)))
    return session.scalar(_scoped(query, branch_id)) or 0


@dataclass(frozen=True)
class Bucket:
    start: datetime
    rows: int
    failed: int


def throughput(session: Session, *, window: timedelta = timedelta(hours=1), buckets: int = 30,
               branch_id: int | None = None, now: datetime | None = None) -> list[Bucket]:
    """Rows processed by workers per time bucket over the last ``window`` (oldest first, gaps as zero).

    Rows rejected by validation are not counted: no worker processed them.
    """
    now = now or utcnow()
    size = max(1.0, window.total_seconds() / buckets)
    start = now - window
    epoch = _epoch_seconds(session, TaskItem.finished_at)
    index = cast(func.floor((epoch - start.timestamp()) / size), Integer)
    failed = func.sum(cast(TaskItem.status == ItemStatus.FAILED, Integer))
    query = (
        select(index, func.count(), failed)
        .join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
        .where(TaskItem.finished_at >= start, TaskItem.finished_at <= now,
               TaskItem.status.in_([ItemStatus.CREATED, ItemStatus.EXISTING, ItemStatus.FAILED]),
               func.coalesce(TaskItem.error_code, "") != "invalid_row")
        .group_by(index)
    )
    found = {int(i): (int(n), int(f or 0)) for i, n, f in session.execute(_scoped(query, branch_id)) if i is not None}
    return [Bucket(start + timedelta(seconds=size * i), *found.get(i, (0, 0))) for i in range(buckets)]


def _epoch_seconds(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        # Stored as naive UTC text; julianday keeps the fraction of a second.
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def rows_per_minute(buckets: Sequence[Bucket], window: timedelta) -> float:
    """The average rate over the window, for a headline figure."""
    minutes = max(window.total_seconds() / 60.0, 1e-9)
    return sum(b.rows for b in buckets) / minutes
