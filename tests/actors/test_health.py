"""Maintenance actors and the heartbeat middleware on the stub broker: one probe per slot, recovery re-rings,
a worker registers itself and leaves nothing owned when it stops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import func, select

from actors import heartbeat, runtime
from actors.health import probe_once, recover_work, run_health_probe
from actors.middleware import WorkerHeartbeats
from scholarise import claims, heartbeats, tasks
from scholarise.db import session_scope
from scholarise.models import (
    BackgroundTask,
    HealthCheck,
    HealthRun,
    ItemStatus,
    TaskExecutionLog,
    TaskItem,
    TaskStatus,
    WorkerHeartbeat,
    utcnow,
)
from tests.conftest import drain


@pytest.fixture(autouse=True)
def fresh_heartbeat(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(heartbeat, "_current", None)
    yield
    beat = heartbeat._current
    if beat is not None and beat.running:
        beat._wake.set()


def factory():
    return runtime.current().session_factory


def submit(n: int = 25) -> int:
    items = [{"first_name": f"P{i}", "last_name": "T", "email": f"p{i}@example.org"} for i in range(n)]
    with session_scope(factory()) as session:
        return tasks.create_bulk_task(session, "BULK_USER_CREATION", "Import", "",
                                      {"type": "teacher", "branch": "Main", "items": items}).id


def count(model, *where) -> int:
    with session_scope(factory()) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def join_maintenance(broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    broker.join("maintenance", fail_fast=True)
    worker.join()


def test_a_slot_enqueued_by_two_clocks_runs_one_probe(broker, worker):
    run_health_probe.send(7, "schedule")
    run_health_probe.send(7, "schedule")
    run_health_probe.send(8, "schedule")
    join_maintenance(broker, worker)
    assert count(HealthRun) == 2
    with session_scope(factory()) as session:
        names = set(session.scalars(select(HealthCheck.name)))
    assert names == {"database", "broker", "workers", "scheduler", "outbox", "stuck_tasks", "recovery"}


def test_a_probe_run_recovers_a_lost_workers_batch_and_the_task_completes(broker, worker):
    task_id = submit(25)
    with session_scope(factory()) as session:
        claims.claim_batch(session, worker_id="dead-host:99", batch_size=10, lease_seconds=3600)
        heartbeats.beat(session, heartbeats.Identity("dead-host", 99, utcnow()), roles=["worker"],
                        now=utcnow() - timedelta(minutes=5))
    run_id = probe_once(runtime.current().settings, slot=None, trigger="manual")
    drain(broker, worker)
    with session_scope(factory()) as session:
        recovery_check = session.scalar(select(HealthCheck).where(HealthCheck.run_id == run_id,
                                                                  HealthCheck.name == "recovery"))
        assert recovery_check.status == "warning" and "dead-host:99" in recovery_check.message
        assert session.get(BackgroundTask, task_id).status == TaskStatus.COMPLETED


def test_recover_work_rings_for_work_whose_doorbell_was_lost(broker, worker):
    task_id = submit(15)  # created without a ring: as if the message had been lost
    with session_scope(factory()) as session:
        session.get(BackgroundTask, task_id).created_at = utcnow() - timedelta(hours=1)
        for log in session.scalars(select(TaskExecutionLog)):
            log.created_at = utcnow() - timedelta(hours=1)
    recover_work.send()
    join_maintenance(broker, worker)
    drain(broker, worker)
    assert count(TaskItem, TaskItem.status == ItemStatus.CREATED) == 15


def test_a_worker_registers_its_queues_beats_and_says_goodbye(broker, migrated):
    broker.add_middleware(WorkerHeartbeats())
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    me = heartbeat.current().worker_id
    with session_scope(factory()) as session:
        row = session.get(WorkerHeartbeat, me)
        assert "worker" in row.roles and {"imports", "maintenance"} <= set(row.queues)
        assert row.stopped_at is None
    worker.stop()
    with session_scope(factory()) as session:
        assert session.get(WorkerHeartbeat, me).stopped_at is not None


def test_rows_a_worker_still_holds_when_it_stops_are_handed_back(broker):
    broker.add_middleware(WorkerHeartbeats())
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    task_id = submit(12)
    with session_scope(factory()) as session:  # a batch that outlived the shutdown timeout
        claims.claim_batch(session, worker_id=heartbeat.current().worker_id, batch_size=10, lease_seconds=3600)
    worker.stop()
    assert count(TaskItem, TaskItem.status == ItemStatus.PROCESSING) == 0
    with session_scope(factory()) as session:
        messages = [log.message for log in session.scalars(select(TaskExecutionLog)
                                                           .where(TaskExecutionLog.task_id == task_id))]
    assert any("shut down before its batch finished" in m for m in messages)
