"""Self-healing: give work held by dead processes back, and find work nobody is ringing for.

Two things go wrong in a cluster, and both are decided from the database alone:

* **A worker dies holding a batch** (SIGKILL, OOM, lost machine). Its heartbeat goes silent; after
  ``heartbeat_timeout`` seconds its claimed rows are released so any worker resumes them at the
  first unfinished row. The provider look-up that starts every batch links the accounts the dead
  worker had already created, so nothing is created twice. Rows claimed by an earlier process that
  had the same ``host:pid`` (a container restart reuses pids) are released the same way.
* **Work is left without a doorbell** (a Redis restart dropped the queue, a message was dropped
  after its retries). When no live worker holds any batch and no active task has shown a sign of
  life for ``stalled_after`` seconds, the active tasks are returned so the caller rings again.

Recovery only moves rows back to pending and says which tasks to ring; running it twice, or on two
machines at once, changes nothing more. Every action is written to the task's execution log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from scholarise import claims
from scholarise import tasks as task_service
from scholarise.heartbeats import state_of
from scholarise.models import (
    BackgroundTask,
    ItemStatus,
    TaskExecutionLog,
    TaskItem,
    TaskStatus,
    WorkerHeartbeat,
    utcnow,
)

RECOVERY_LOCK_KEY = 0x5C401A15  # any constant the application uses for nothing else


@dataclass
class RecoveryReport:
    """What one recovery pass did; ``ring`` lists the tasks the caller must ring (after committing)."""

    released_rows: int = 0
    lost_workers: list[str] = field(default_factory=list)
    reused_ids: list[str] = field(default_factory=list)
    stalled_tasks: list[int] = field(default_factory=list)
    ring: list[int] = field(default_factory=list)
    checked_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def changed(self) -> bool:
        return bool(self.released_rows or self.ring)


def stalled_after_default(heartbeat_timeout: float) -> float:
    """How long active work may show no sign of life before its doorbell is presumed lost."""
    return 2 * heartbeat_timeout


def recover(session: Session, *, heartbeat_timeout: float, stalled_after: float | None = None,
            now: datetime | None = None) -> RecoveryReport:
    """One idempotent recovery pass (flushes; the caller commits, then rings ``report.ring``)."""
    if session.get_bind().dialect.name == "postgresql":
        # One pass at a time across the cluster (SQLite's BEGIN IMMEDIATE already serialises writers), so
        # two clocks recovering together neither log the same release twice nor ring twice.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RECOVERY_LOCK_KEY})
    now = now or utcnow()
    stalled_after = stalled_after if stalled_after is not None else stalled_after_default(heartbeat_timeout)
    report = RecoveryReport(checked_at=now.isoformat())
    rung: set[int] = set()
    holders = [h for h in claims.claim_holders(session) if h]
    beats = {b.id: b for b in session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.id.in_(holders)))}
    for worker_id in holders:
        beat = beats.get(worker_id)
        if beat is None:
            continue  # a process that never registered (an older version?): its claims expire with the lease
        state = state_of(beat, now=now, timeout=heartbeat_timeout)
        if state in ("lost", "stopped"):
            tasks = _tasks_held_by(session, worker_id)
            why = (f"it shut down at {beat.stopped_at:%H:%M:%S} UTC before finishing its batch" if state == "stopped"
                   else f"its last heartbeat was {(now - beat.last_seen).total_seconds():.0f} s ago "
                        f"(timeout {heartbeat_timeout:g} s)")
            report.released_rows += claims.release_claims(session, [worker_id], why=why)
            report.lost_workers.append(worker_id)
            rung.update(tasks)
        else:
            released, tasks = _release_from_earlier_process(session, beat)
            if released:
                report.released_rows += released
                report.reused_ids.append(worker_id)
                rung.update(tasks)
    report.stalled_tasks = _stalled_tasks(session, now=now, stalled_after=stalled_after,
                                          heartbeat_timeout=heartbeat_timeout)
    for task_id in report.stalled_tasks:
        task_service.log(session, task_id,
                         f"Re-queued: no worker has touched this task for more than {stalled_after:g} s, "
                         "so its queued message was probably lost.", level="WARNING",
                         details={"recovery": "requeue"})
    rung.update(report.stalled_tasks)
    report.ring = sorted(rung)
    session.flush()
    return report


def _tasks_held_by(session: Session, worker_id: str) -> list[int]:
    return list(session.scalars(
        select(TaskItem.task_id).where(TaskItem.status == ItemStatus.PROCESSING, TaskItem.claimed_by == worker_id)
        .distinct()
    ))


def _release_from_earlier_process(session: Session, beat: WorkerHeartbeat) -> tuple[int, list[int]]:
    """Rows claimed under this id before the live process with that id started belong to a dead predecessor."""
    stale = (TaskItem.status == ItemStatus.PROCESSING) & (TaskItem.claimed_by == beat.id) & (
        TaskItem.claimed_at < beat.started_at)
    tasks = list(session.scalars(select(TaskItem.task_id).where(stale).distinct()))
    if not tasks:
        return 0, []
    result = session.execute(
        update(TaskItem).where(stale)
        .values(status=ItemStatus.PENDING, claim_token=None, claimed_at=None, claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    for task_id in tasks:
        task_service.log(session, task_id,
                         f"Recovered rows claimed by an earlier process with the id {beat.id} "
                         f"(it restarted at {beat.started_at:%H:%M:%S} UTC and reused the pid).",
                         level="WARNING", details={"worker": beat.id, "recovery": "reused-id"})
    return result.rowcount or 0, tasks


def _stalled_tasks(session: Session, *, now: datetime, stalled_after: float, heartbeat_timeout: float) -> list[int]:
    """Active tasks when nothing is moving: no live claim anywhere and no sign of life for ``stalled_after``."""
    live_claims = session.scalar(
        select(func.count()).select_from(TaskItem)
        .join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
        .join(WorkerHeartbeat, WorkerHeartbeat.id == TaskItem.claimed_by, isouter=True)
        .where(BackgroundTask.status.in_(TaskStatus.ACTIVE), TaskItem.status == ItemStatus.PROCESSING,
               # a claim counts as live unless its holder is known to be gone
               (WorkerHeartbeat.id.is_(None)) | (
                   (WorkerHeartbeat.stopped_at.is_(None))
                   & (WorkerHeartbeat.last_seen >= now - timedelta(seconds=heartbeat_timeout))))
    )
    if live_claims:
        return []
    last_log = (select(func.max(TaskExecutionLog.created_at))
                .where(TaskExecutionLog.task_id == BackgroundTask.id).scalar_subquery())
    cutoff = now - timedelta(seconds=stalled_after)
    rows = session.execute(
        select(BackgroundTask.id, BackgroundTask.created_at, BackgroundTask.started_at, BackgroundTask.progress_at,
               BackgroundTask.heartbeat_at, last_log.label("last_log"))
        .where(BackgroundTask.status.in_(TaskStatus.ACTIVE))
        .order_by(BackgroundTask.priority, BackgroundTask.created_at)
    ).all()
    signs = {r.id: max(_aware(t) for t in (r.created_at, r.started_at, r.progress_at, r.heartbeat_at, r.last_log) if t)
             for r in rows}
    if any(t >= cutoff for t in signs.values()):
        return []  # something moved recently: the doorbells are still going round
    return [r.id for r in rows]


def _aware(value: datetime) -> datetime:
    # An aggregate may come back without a zone on SQLite; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def work_summary(session: Session) -> dict[str, Any]:
    """Open work at a glance: active tasks and their pending / in-progress rows."""
    active = session.scalar(select(func.count()).select_from(BackgroundTask)
                            .where(BackgroundTask.status.in_(TaskStatus.ACTIVE))) or 0
    counts = dict(session.execute(
        select(TaskItem.status, func.count())
        .join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
        .where(BackgroundTask.status.in_(TaskStatus.ACTIVE), TaskItem.status.in_(ItemStatus.OPEN))
        .group_by(TaskItem.status)
    ).all())
    return {"active_tasks": active, "pending_rows": counts.get(ItemStatus.PENDING, 0),
            "rows_in_progress": counts.get(ItemStatus.PROCESSING, 0)}
