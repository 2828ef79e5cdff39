"""Recovery: rows of lost, stopped or reused-id workers go back to pending; stalled work is re-rung; twice is once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scholarise import claims, heartbeats, recovery, tasks
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.models import BackgroundTask, ItemStatus, TaskExecutionLog, TaskItem, utcnow

TIMEOUT = 30.0


@pytest.fixture
def factory(any_db_settings: Settings) -> Iterator[sessionmaker[Session]]:
    upgrade(any_db_settings)
    engine = make_engine(any_db_settings)
    yield make_session_factory(engine)
    engine.dispose()


def submit(factory: sessionmaker[Session], n: int = 25) -> int:
    items = [{"first_name": f"P{i}", "last_name": "T", "email": f"p{i}@example.org"} for i in range(n)]
    with session_scope(factory) as session:
        return tasks.create_bulk_task(session, "BULK_USER_CREATION", "Import", "",
                                      {"type": "teacher", "branch": "Main", "items": items}).id


def claim(factory: sessionmaker[Session], worker_id: str, *, at: datetime | None = None) -> claims.Claim:
    with session_scope(factory) as session:
        found = claims.claim_batch(session, worker_id=worker_id, batch_size=10, lease_seconds=300, now=at)
        assert found is not None
        return found


def beat(factory: sessionmaker[Session], worker_id: str, *, seen: datetime, started: datetime | None = None) -> None:
    host, _, pid = worker_id.rpartition(":")
    me = heartbeats.Identity(host, int(pid), started or seen - timedelta(minutes=5))
    with session_scope(factory) as session:
        heartbeats.beat(session, me, roles=["worker"], now=seen)


def recover(factory: sessionmaker[Session], **kw) -> recovery.RecoveryReport:
    with session_scope(factory) as session:
        return recovery.recover(session, heartbeat_timeout=TIMEOUT, **kw)


def open_rows(factory: sessionmaker[Session], status: str) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(TaskItem).where(TaskItem.status == status)) or 0


def log_lines(factory: sessionmaker[Session], task_id: int, text: str) -> list[str]:
    with session_scope(factory) as session:
        return [m for m in session.scalars(select(TaskExecutionLog.message).where(TaskExecutionLog.task_id == task_id))
                if text in m]


def test_rows_of_a_worker_whose_heartbeat_went_stale_are_released_logged_and_rung_once(factory):
    task_id = submit(factory)
    claim(factory, "host-a:11")
    beat(factory, "host-a:11", seen=utcnow() - timedelta(seconds=TIMEOUT + 5))
    report = recover(factory)
    assert (report.released_rows, report.lost_workers, report.ring) == (10, ["host-a:11"], [task_id])
    assert open_rows(factory, ItemStatus.PROCESSING) == 0
    assert len(log_lines(factory, task_id, "Recovered rows claimed by worker host-a:11")) == 1
    again = recover(factory)
    assert (again.released_rows, again.ring) == (0, [])
    assert len(log_lines(factory, task_id, "Recovered rows")) == 1


def test_rows_of_a_live_worker_are_left_alone(factory):
    submit(factory)
    claim(factory, "host-a:12")
    beat(factory, "host-a:12", seen=utcnow())
    report = recover(factory)
    assert (report.released_rows, report.ring) == (0, [])
    assert open_rows(factory, ItemStatus.PROCESSING) == 10


def test_a_worker_that_said_goodbye_is_recovered_without_waiting_for_the_timeout(factory):
    task_id = submit(factory)
    claim(factory, "host-a:13")
    beat(factory, "host-a:13", seen=utcnow())
    with session_scope(factory) as session:
        heartbeats.mark_stopped(session, "host-a:13")
    report = recover(factory)
    assert (report.released_rows, report.ring) == (10, [task_id])
    assert log_lines(factory, task_id, "shut down")


def test_claims_of_a_process_that_never_registered_are_left_to_their_lease(factory):
    submit(factory)
    claim(factory, "old-version:14")
    assert recover(factory).released_rows == 0


def test_rows_claimed_under_a_reused_pid_before_the_new_process_started_are_released(factory):
    task_id = submit(factory, 25)
    claim(factory, "host-b:1", at=utcnow() - timedelta(minutes=2))  # the previous container's worker
    beat(factory, "host-b:1", seen=utcnow(), started=utcnow() - timedelta(seconds=20))  # restarted, same id
    claim(factory, "host-b:1")  # the new process's own claim stays
    report = recover(factory)
    assert (report.released_rows, report.reused_ids, report.ring) == (10, ["host-b:1"], [task_id])
    assert open_rows(factory, ItemStatus.PROCESSING) == 10
    assert log_lines(factory, task_id, "reused the pid")


def _age_everything(factory: sessionmaker[Session], seconds: float) -> None:
    old = utcnow() - timedelta(seconds=seconds)
    with session_scope(factory) as session:
        session.execute(update(BackgroundTask).values(created_at=old))
        session.execute(update(TaskExecutionLog).values(created_at=old))


def test_work_nobody_touched_for_a_while_is_returned_for_ringing_once_per_stall(factory):
    task_id = submit(factory)
    assert recover(factory).stalled_tasks == []  # just created: its doorbell may still be on its way
    _age_everything(factory, 2 * TIMEOUT + 1)
    report = recover(factory)
    assert (report.stalled_tasks, report.ring) == ([task_id], [task_id])
    assert len(log_lines(factory, task_id, "Re-queued")) == 1
    assert recover(factory).ring == []  # the re-queue itself counts as a sign of life


def test_nothing_is_stalled_while_a_live_worker_holds_a_batch(factory):
    submit(factory)
    submit(factory)
    claim(factory, "host-c:15")
    beat(factory, "host-c:15", seen=utcnow())
    _age_everything(factory, 10 * TIMEOUT)
    assert recover(factory).ring == []


def test_the_work_summary_counts_open_rows_of_active_tasks(factory):
    submit(factory, 25)
    claim(factory, "host-d:16")
    with session_scope(factory) as session:
        assert recovery.work_summary(session) == {"active_tasks": 1, "pending_rows": 15, "rows_in_progress": 10}
