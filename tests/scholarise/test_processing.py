"""Working tasks batch by batch: outcomes, priority, idempotency, crash resume, progress throttling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from scholarise import claims, processing, tasks
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.models import (
    BackgroundTask,
    ItemStatus,
    LocalAccount,
    TaskExecutionLog,
    TaskItem,
    TaskStatus,
    Teacher,
    utcnow,
)
from scholarise.processing import WorkContext
from scholarise.providers.local import LocalProvider


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(start, start + n)]


@pytest.fixture
def ctx(any_db_settings: Settings) -> Iterator[WorkContext]:
    upgrade(any_db_settings)
    engine = make_engine(any_db_settings)
    factory = make_session_factory(engine)
    yield WorkContext(factory, LocalProvider(factory), any_db_settings, "test-host:1", sleep=lambda s: None)
    engine.dispose()


def submit(ctx: WorkContext, items, *, priority: int = 5, title: str = "Import") -> int:
    with session_scope(ctx.session_factory) as session:
        task = tasks.create_bulk_task(session, "BULK_USER_CREATION", title, "",
                                      {"type": "teacher", "branch": "Main", "items": items, "priority": priority})
        return task.id


def run_all(ctx: WorkContext) -> int:
    batches = 0
    while processing.process_next_batch(ctx).more_work:
        batches += 1
    return batches


def task_of(ctx: WorkContext, task_id: int) -> BackgroundTask:
    with session_scope(ctx.session_factory) as session:
        return tasks.get_task(session, task_id)


def test_a_task_is_worked_in_batches_to_completion(ctx):
    task_id = submit(ctx, people(25))
    assert run_all(ctx) == 3
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count, task.failed_count, task.progress) == (TaskStatus.COMPLETED, 25, 0, 100.0)
    with session_scope(ctx.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Teacher)) == 25
        assert session.scalar(select(func.count()).select_from(LocalAccount)) == 25
        assert all(t.external_user_id for t in session.scalars(select(Teacher)))


def test_importing_the_same_people_again_links_the_same_accounts(ctx):
    first = submit(ctx, people(12))
    run_all(ctx)
    second = submit(ctx, people(12))
    run_all(ctx)
    task = task_of(ctx, second)
    assert (task.status, task.created_count, task.existing_count) == (TaskStatus.COMPLETED, 0, 12)
    with session_scope(ctx.session_factory) as session:
        assert tasks.failed_items(session, first) == []
        accounts = session.scalar(select(func.count()).select_from(LocalAccount))
        linked = session.execute(select(Teacher.email, Teacher.external_user_id)).all()
    assert accounts == 12 and len(linked) == 12


def test_a_task_whose_every_row_failed_is_failed(ctx):
    task_id = submit(ctx, [{"first_name": "", "email": "x@example.org"}])
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert task.status == TaskStatus.FAILED and "all 1 rows failed" in task.error_summary


def test_the_most_urgent_task_is_claimed_first_then_the_oldest(ctx):
    low = [submit(ctx, people(5, i * 5), priority=10, title=f"low {i}") for i in range(3)]
    urgent = submit(ctx, people(5, 100), priority=1, title="urgent")
    with session_scope(ctx.session_factory) as session:
        first = claims.claim_batch(session, worker_id="w", batch_size=10, lease_seconds=60)
        second = claims.claim_batch(session, worker_id="w", batch_size=10, lease_seconds=60)
    assert (first.task_id, second.task_id) == (urgent, low[0])


def test_cancel_is_honoured_between_batches(ctx):
    task_id = submit(ctx, people(30))
    processing.process_next_batch(ctx)
    with session_scope(ctx.session_factory) as session:
        tasks.cancel_task(session, task_id)
    assert not processing.process_next_batch(ctx).more_work
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count) == (TaskStatus.CANCELLED, 10)


def test_rows_of_a_killed_worker_are_resumed_and_created_exactly_once(ctx):
    task_id = submit(ctx, people(20))
    # A worker claims a batch, creates half its accounts, and dies before committing anything.
    with session_scope(ctx.session_factory) as session:
        claim = claims.claim_batch(session, worker_id="dead-host:999", batch_size=10, lease_seconds=600)
    for row in claim.rows[:5]:
        processing._create(ctx, claim, row, tasks.external_id_for(row.email))
    run_all(ctx)  # the other batch is done; the dead worker's rows are still claimed
    assert task_of(ctx, task_id).status == TaskStatus.RUNNING
    with session_scope(ctx.session_factory) as session:
        assert claims.resume_task(session, task_id) == 10
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count, task.existing_count) == (TaskStatus.COMPLETED, 20, 0)
    with session_scope(ctx.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(LocalAccount)) == 20
        messages = session.scalars(select(TaskExecutionLog.message).where(TaskExecutionLog.task_id == task_id)).all()
    assert any("Resume: 10 rows" in m for m in messages)


def test_an_expired_claim_is_taken_over_without_anyone_resuming_it(ctx):
    task_id = submit(ctx, people(5))
    with session_scope(ctx.session_factory) as session:
        claims.claim_batch(session, worker_id="gone:1", batch_size=10, lease_seconds=600)
    assert not processing.process_next_batch(ctx).more_work  # still leased
    ctx.settings = ctx.settings.replace(batch_lease_seconds=10)
    with session_scope(ctx.session_factory) as session:
        session.execute(update(TaskItem).values(claimed_at=utcnow() - timedelta(minutes=5)))
    run_all(ctx)
    assert task_of(ctx, task_id).created_count == 5


def test_progress_is_written_at_most_once_per_interval(ctx):
    ctx.settings = ctx.settings.replace(progress_interval=3600.0)
    task_id = submit(ctx, people(60))
    writes = []
    engine = ctx.session_factory.kw["bind"]

    def count(conn, cursor, statement, params, context, executemany):
        if statement.startswith("UPDATE background_tasks") and "progress_at" in statement:
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        run_all(ctx)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # one progress write (the first batch), then only the final status write
    assert len(writes) == 2
    assert task_of(ctx, task_id).created_count == 60


def test_concurrent_workers_never_claim_the_same_row(ctx):
    submit(ctx, people(200))
    claimed: list[int] = []
    lock = threading.Lock()
    errors = []

    def claim_loop():
        try:
            while True:
                with session_scope(ctx.session_factory) as session:
                    claim = claims.claim_batch(session, worker_id=threading.current_thread().name,
                                                   batch_size=7, lease_seconds=600)
                if claim is None:
                    return
                with lock:
                    claimed.extend(r.id for r in claim.rows)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim_loop, name=f"w{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_rows_already_in_the_provider_are_linked_not_created(ctx):
    ctx.provider.create_user(processing.NewUser("p3@example.org", "P3", "Test", "someone-else"))
    task_id = submit(ctx, people(5))
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert (task.created_count, task.existing_count) == (4, 1)
    with session_scope(ctx.session_factory) as session:
        item = session.scalar(select(TaskItem).where(TaskItem.email == "p3@example.org"))
    assert item.status == ItemStatus.EXISTING and item.external_user_id
