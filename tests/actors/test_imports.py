"""Imports through Dramatiq (stub broker, real worker threads): the doorbell actor and the Python API."""

from __future__ import annotations

import actors
from actors import runtime
from scholarise.db import session_scope
from scholarise.models import BackgroundTask, TaskStatus
from tests.conftest import drain


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(start, start + n)]


def submit(items, *, priority: int = 5, title: str = "Import") -> int:
    return actors.create_bulk_task("BULK_USER_CREATION", title, "", {
        "type": "teacher", "branch": "Main", "items": items, "priority": priority})


def test_a_task_submitted_through_the_python_api_runs_to_completion(broker, worker):
    task_id = submit(people(35))
    drain(broker, worker)
    summary = actors.get_task(task_id)
    assert (summary["status"], summary["created"], summary["total"]) == (TaskStatus.COMPLETED, 35, 35)


def test_an_urgent_task_submitted_behind_three_slow_ones_starts_first(broker):
    import dramatiq

    low = [submit(people(20, 100 * i), priority=10, title=f"low {i}") for i in range(3)]
    urgent = submit(people(20, 1000), priority=1, title="urgent")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        drain(broker, worker)
    finally:
        worker.stop()
    started = {t: actors.get_task(t) for t in [*low, urgent]}
    assert all(s["status"] == TaskStatus.COMPLETED for s in started.values())
    with session_scope(runtime.current().session_factory) as session:
        times = {t: session.get(BackgroundTask, t).started_at for t in started}
        finished = {t: session.get(BackgroundTask, t).finished_at for t in started}
    # one worker thread: every batch of the urgent task runs before any batch of the waiting ones
    assert finished[urgent] <= min(times[t] for t in low)


def test_wait_for_task_returns_the_summary_with_failures(broker, worker):
    task_id = submit([*people(3), {"first_name": "", "email": "bad@example.org"}])
    summary = actors.wait_for_task(task_id, timeout=30, poll=0.05)
    assert summary["status"] == TaskStatus.COMPLETED_WITH_ERRORS
    assert summary["failures"] == [
        {"line": 4, "email": "bad@example.org", "code": "invalid_row", "reason": "first name is required"}
    ]


def test_retry_failed_rows_runs_them_again(broker):
    import dramatiq

    task_id = submit(people(5))
    actors.cancel_task(task_id, by="test")  # before any worker runs, so no row is mid-batch
    assert actors.get_task(task_id)["status"] == TaskStatus.CANCELLED
    assert actors.retry_failed_rows(task_id) == 5
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        summary = actors.wait_for_task(task_id, timeout=30, poll=0.05)
    finally:
        worker.stop()
    assert (summary["status"], summary["created"]) == (TaskStatus.COMPLETED, 5)
