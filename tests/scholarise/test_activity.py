"""Read views of the work: a task's rows and log, active and recent tasks, throughput (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from scholarise import activity
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.models import BackgroundTask, TaskItem, utcnow
from scholarise.tasks import create_bulk_task, get_or_create_branch


def _task(session, branch: str, n: int, title: str = "Import") -> BackgroundTask:  # noqa: ANN001
    items = [{"first_name": f"P{i}", "email": f"{branch[:1].lower()}{i}-{title[:3]}@example.org"} for i in range(n)]
    return create_bulk_task(session, "BULK_USER_CREATION", title, "", {"user_type": "teacher", "branch": branch,
                                                                       "items": items + [{"email": "bad"}]})


def test_throughput_counts_processed_rows_per_bucket_and_ignores_invalid_ones(any_db_settings: Settings) -> None:
    upgrade(any_db_settings)
    engine = make_engine(any_db_settings)
    now = utcnow()
    try:
        with session_scope(make_session_factory(engine)) as s:
            north, south = _task(s, "North", 4), _task(s, "South", 2)
            items = s.query(TaskItem).filter(TaskItem.status == "pending").order_by(TaskItem.id).all()
            for minutes_ago, item in zip([1, 1, 5, 5, 70, 1], items, strict=True):
                item.status = "failed" if minutes_ago == 5 else "created"
                item.finished_at = now - timedelta(minutes=minutes_ago, seconds=10)
            s.flush()
            buckets = activity.throughput(s, window=timedelta(hours=1), buckets=12, now=now)
            assert len(buckets) == 12 and buckets[0].start == now - timedelta(hours=1)
            assert sum(b.rows for b in buckets) == 5  # the 70-minute-old row and the invalid rows do not count
            assert buckets[-1].rows == 3 and buckets[-1].failed == 0
            assert buckets[-2].rows == 2 and buckets[-2].failed == 2
            north_only = activity.throughput(s, window=timedelta(hours=1), buckets=12, now=now,
                                             branch_id=north.branch_id)
            assert sum(b.rows for b in north_only) == 4
            assert activity.rows_per_minute(buckets, timedelta(hours=1)) == 5 / 60
            assert south.id
    finally:
        engine.dispose()


def test_task_rows_log_and_lists_are_scoped_and_ordered(session) -> None:  # noqa: ANN001
    north = _task(session, "North", 3, "First")
    south = _task(session, "South", 1, "Second")
    rows, matching = activity.task_rows(session, north.id, status="failed")
    assert matching == 1 and rows[0].email == "bad"
    page, total = activity.task_rows(session, north.id, offset=1, limit=2)
    assert total == 4 and [r.row_number for r in page] == [2, 3]
    assert "Task created with 4 rows" in activity.task_log(session, north.id)[0].message
    assert [t.id for t in activity.active_tasks(session)] == [north.id, south.id]
    branch = get_or_create_branch(session, "South")
    assert [t.id for t in activity.active_tasks(session, branch_id=branch.id)] == [south.id]
    assert activity.status_counts(session)["PENDING"] == 2
    assert activity.pending_rows(session) == 4 and activity.pending_rows(session, branch_id=branch.id) == 1
    assert activity.recent_finished_tasks(session) == []
