"""Claiming rows: who works which batch, and handing rows back when their worker is gone.

A batch is claimed with a compare-and-set on its rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite's ``BEGIN IMMEDIATE`` serialises writers), tagged with a random token and the worker's
``host:pid``. Claims expire after a lease, and can be released at once when the worker is known
to be gone (``resume_task``, ``release_claims``) — the rows then go to whichever worker asks next.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from scholarise import tasks as task_service
from scholarise.models import BackgroundTask, ItemStatus, TaskItem, TaskStatus, utcnow

MAX_ITEM_ATTEMPTS = 10


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    line: int
    email: str
    data: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Claim:
    task_id: int
    user_type: str
    branch_id: int
    token: str
    rows: list[ClaimedRow]
    resumed: int = 0
    expect_existing: bool = False


def _claimable(stale_before: datetime) -> Any:
    return (TaskItem.status == ItemStatus.PENDING) | (
        (TaskItem.status == ItemStatus.PROCESSING) & (TaskItem.claimed_at < stale_before)
    )


def claim_batch(session: Session, *, worker_id: str, batch_size: int, lease_seconds: int,
                now: datetime | None = None) -> Claim | None:
    """Claim the next batch of the most urgent task (priority 1 first, then oldest), or None."""
    now = now or utcnow()
    claimable = _claimable(now - timedelta(seconds=lease_seconds))
    has_work = exists().where(TaskItem.task_id == BackgroundTask.id, claimable)
    postgres = session.get_bind().dialect.name == "postgresql"
    for _ in range(5):
        task = session.execute(
            select(BackgroundTask.id, BackgroundTask.user_type, BackgroundTask.branch_id, BackgroundTask.options)
            .where(BackgroundTask.status.in_(TaskStatus.ACTIVE), has_work)
            .order_by(BackgroundTask.priority, BackgroundTask.created_at, BackgroundTask.id)
            .limit(1)
        ).first()
        if task is None:
            return None
        size = int((task.options or {}).get("batch_size") or batch_size)
        pick = (
            select(TaskItem.id, TaskItem.status)
            .where(TaskItem.task_id == task.id, claimable)
            .order_by(TaskItem.row_number)
            .limit(size)
        )
        if postgres:
            pick = pick.with_for_update(skip_locked=True)
        picked = session.execute(pick).all()
        if not picked:
            continue
        token = uuid.uuid4().hex
        result = session.execute(
            update(TaskItem)
            .where(TaskItem.id.in_([p.id for p in picked]), claimable)
            .values(status=ItemStatus.PROCESSING, claim_token=token, claimed_at=now, claimed_by=worker_id,
                    attempts=TaskItem.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:
            continue
        rows = [
            ClaimedRow(r.id, r.row_number, r.email or "", dict(r.data or {}), r.attempts)
            for r in session.execute(
                select(TaskItem.id, TaskItem.row_number, TaskItem.email, TaskItem.data, TaskItem.attempts)
                .where(TaskItem.claim_token == token)
                .order_by(TaskItem.row_number)
            )
        ]
        resumed = sum(1 for p in picked if p.status == ItemStatus.PROCESSING)
        if task_service.transition(session, task.id, [TaskStatus.PENDING], TaskStatus.RUNNING,
                                   started_at=now, worker_id=worker_id, heartbeat_at=now):
            task_service.log(session, task.id, f"Started by worker {worker_id}.")
        if resumed:
            task_service.log(session, task.id, f"Resumed {resumed} rows whose worker stopped before finishing them.",
                             level="WARNING", details={"rows": [r.line for r in rows], "worker": worker_id})
        expect_existing = bool(session.scalar(select(exists().where(
            TaskItem.task_id == task.id, TaskItem.status == ItemStatus.EXISTING))))
        return Claim(task.id, task.user_type, task.branch_id, token, rows, resumed, expect_existing)
    return None


def release_claim(session: Session, claim: Claim, reason: str) -> None:
    """Hand a batch back to pending so any worker takes it again; rows past their attempt budget fail."""
    lines = [r.line for r in claim.rows]
    session.execute(
        update(TaskItem)
        .where(TaskItem.claim_token == claim.token, TaskItem.status == ItemStatus.PROCESSING,
               TaskItem.attempts >= MAX_ITEM_ATTEMPTS)
        .values(status=ItemStatus.FAILED, error_code="provider_unavailable", claim_token=None, finished_at=utcnow(),
                error_message=f"Gave up after {MAX_ITEM_ATTEMPTS} attempts: {reason}")
    )
    session.execute(
        update(TaskItem)
        .where(TaskItem.claim_token == claim.token, TaskItem.status == ItemStatus.PROCESSING)
        .values(status=ItemStatus.PENDING, claim_token=None, claimed_at=None)
    )
    task_service.log(session, claim.task_id, f"Rows {min(lines)}-{max(lines)} handed back for a retry: {reason}",
                     level="WARNING", details={"rows": lines})


def resume_task(session: Session, task_id: int) -> int:
    """Release every claimed row of a task at once (its worker is known to be gone); returns how many.

    Raises:
        NotFoundError: no such task.
    """
    task_service.get_task(session, task_id)
    result = session.execute(
        update(TaskItem)
        .where(TaskItem.task_id == task_id, TaskItem.status == ItemStatus.PROCESSING)
        .values(status=ItemStatus.PENDING, claim_token=None, claimed_at=None)
    )
    count = result.rowcount or 0
    if count:
        task_service.log(session, task_id, f"Resume: {count} rows claimed by a stopped worker were released.",
                         level="WARNING")
    return count


def claim_holders(session: Session) -> list[str]:
    """Worker ids that hold claimed rows right now."""
    return list(session.scalars(
        select(TaskItem.claimed_by).where(TaskItem.status == ItemStatus.PROCESSING).distinct()
    ))


def release_claims(session: Session, worker_ids: list[str], *, why: str) -> int:
    """Hand back every row claimed by the given (dead) workers, logging it in each task; returns how many."""
    if not worker_ids:
        return 0
    per_task = session.execute(
        select(TaskItem.task_id, TaskItem.claimed_by).where(
            TaskItem.status == ItemStatus.PROCESSING, TaskItem.claimed_by.in_(worker_ids)
        ).distinct()
    ).all()
    result = session.execute(
        update(TaskItem)
        .where(TaskItem.status == ItemStatus.PROCESSING, TaskItem.claimed_by.in_(worker_ids))
        .values(status=ItemStatus.PENDING, claim_token=None, claimed_at=None, claimed_by=None)
    )
    for task_id, worker in per_task:
        task_service.log(session, task_id, f"Recovered rows claimed by worker {worker}: {why}", level="WARNING",
                         details={"worker": worker})
    return result.rowcount or 0
