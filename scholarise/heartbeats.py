"""Process heartbeats: each web, worker and clock process says every few seconds that it is alive.

A process that stops saying so for ``heartbeat_timeout`` seconds is *lost*: recovery hands its
claimed rows to a live worker. A process that stops cleanly marks itself stopped at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from scholarise.models import BackgroundTask, ItemStatus, ProcessRole, TaskItem, TaskStatus, WorkerHeartbeat, utcnow


@dataclass(frozen=True)
class Identity:
    """Who is beating: ``host:pid`` plus when this process started (tells a reused pid from its predecessor)."""

    host: str
    pid: int
    started_at: datetime

    @property
    def worker_id(self) -> str:
        return f"{self.host}:{self.pid}"


def beat(session: Session, me: Identity, *, roles: Iterable[str], queues: Iterable[str] = (),
         stopping: bool = False, now: datetime | None = None) -> WorkerHeartbeat:
    """Insert or refresh this process's row, with the batches it holds right now."""
    now = now or utcnow()
    row = session.get(WorkerHeartbeat, me.worker_id)
    if row is None:
        row = WorkerHeartbeat(id=me.worker_id, host=me.host, pid=me.pid)
        session.add(row)
    row.started_at = me.started_at
    row.roles = sorted(set(roles))
    row.queues = sorted(set(queues))
    row.last_seen = now
    row.stopping = stopping
    row.stopped_at = None
    row.current_task_id, row.current_batch = current_work(session, me.worker_id)
    session.flush()
    return row


def mark_stopped(session: Session, worker_id: str, *, now: datetime | None = None) -> None:
    """A clean exit: the process is gone, and says so rather than waiting to be timed out."""
    row = session.get(WorkerHeartbeat, worker_id)
    if row is not None:
        now = now or utcnow()
        row.stopping, row.stopped_at, row.last_seen = True, now, now
        row.current_task_id, row.current_batch = None, None
        session.flush()


def current_work(session: Session, worker_id: str) -> tuple[int | None, str | None]:
    """The task and rows this worker holds claimed (``"#3 rows 11-20"``), looked up through active tasks only."""
    held = session.execute(
        select(TaskItem.task_id, func.min(TaskItem.row_number), func.max(TaskItem.row_number))
        .join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
        .where(BackgroundTask.status.in_(TaskStatus.ACTIVE), TaskItem.status == ItemStatus.PROCESSING,
               TaskItem.claimed_by == worker_id)
        .group_by(TaskItem.task_id)
        .order_by(TaskItem.task_id)
    ).all()
    if not held:
        return None, None
    text = "; ".join(f"#{task} rows {low}-{high}" for task, low, high in held)
    return held[0][0], text[:200]


def state_of(row: WorkerHeartbeat, *, now: datetime, timeout: float) -> str:
    """``stopped`` (said goodbye), ``lost`` (silent too long), ``stopping`` (finishing its batch) or ``alive``."""
    if row.stopped_at is not None:
        return "stopped"
    if (now - row.last_seen).total_seconds() > timeout:
        return "lost"
    return "stopping" if row.stopping else "alive"


def _live(now: datetime | None, timeout: float) -> Any:
    """Beat within ``timeout`` seconds and not stopped (a stopping process still counts)."""
    since = (now or utcnow()) - timedelta(seconds=timeout)
    return (WorkerHeartbeat.last_seen >= since) & WorkerHeartbeat.stopped_at.is_(None)


def live_worker_count(session: Session, *, now: datetime | None = None, timeout: float) -> int:
    """How many live processes take work (the ``worker`` role); web and clock processes do not count."""
    roles = session.scalars(select(WorkerHeartbeat.roles).where(_live(now, timeout)))
    return sum(1 for r in roles if ProcessRole.WORKER in (r or []))


def live_ids(session: Session, *, now: datetime | None = None, timeout: float) -> set[str]:
    """Processes that beat within ``timeout`` seconds and have not stopped (a stopping one still counts)."""
    return set(session.scalars(select(WorkerHeartbeat.id).where(_live(now, timeout))))


def describe(session: Session, *, now: datetime | None = None, timeout: float,
             limit: int = 200) -> list[dict[str, Any]]:
    """Every known process, newest first, as JSON-ready dicts with its state and heartbeat age."""
    now = now or utcnow()
    rows = session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.last_seen.desc()).limit(limit))
    return [_describe_one(r, now=now, timeout=timeout) for r in rows]


def _describe_one(r: WorkerHeartbeat, *, now: datetime, timeout: float) -> dict[str, Any]:
    state = state_of(r, now=now, timeout=timeout)
    # A lost or stopped process works on nothing: its last batch was finished or handed back by recovery.
    working = state in ("alive", "stopping")
    return {
        "id": r.id,
        "host": r.host,
        "pid": r.pid,
        "roles": list(r.roles or []),
        "queues": list(r.queues or []),
        "state": state,
        "started_at": r.started_at.isoformat(),
        "last_seen": r.last_seen.isoformat(),
        "seconds_since_heartbeat": round((now - r.last_seen).total_seconds(), 1),
        "current_task_id": r.current_task_id if working else None,
        "current_batch": r.current_batch if working else None,
        "stopped_at": r.stopped_at.isoformat() if r.stopped_at else None,
    }


def prune(session: Session, *, older_than: datetime) -> int:
    """Forget processes not seen since ``older_than``; returns how many rows went."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < older_than))
    return result.rowcount or 0
