"""Processing against the loopback Clerk stand-in: rate limits, faults, ambiguity, fatal refusals."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from scholarise import processing, tasks
from scholarise.csvfile import open_csv
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.models import ItemStatus, TaskItem, TaskStatus, Teacher
from scholarise.processing import WorkContext
from scholarise.providers.clerk import ClerkProvider
from tests.conftest import DEMO
from tests.support.fake_clerk import FakeClerk

KEY = "sk_test_fake_key_for_processing"


@pytest.fixture
def clerk() -> Iterator[FakeClerk]:
    with FakeClerk(KEY, rate_limit=None) as server:
        yield server


@pytest.fixture
def ctx(settings, clerk) -> Iterator[WorkContext]:
    settings = settings.replace(clerk_secret_key=KEY, clerk_api_url=clerk.url, provider_timeout=1.0)
    upgrade(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    provider = ClerkProvider(clerk.url, KEY, timeout=1.0)
    yield WorkContext(factory, provider, settings, "test:1", sleep=time.sleep, backoff_base=0.01)
    provider.close()
    engine.dispose()


def people(n: int) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(n)]


def submit(ctx: WorkContext, items=None, rows=None) -> int:
    with session_scope(ctx.session_factory) as session:
        payload = {"type": "teacher", "branch": "Main", "items": items}
        return tasks.create_bulk_task(session, "BULK_USER_CREATION", "Import", "", payload, rows=rows).id


def run_all(ctx: WorkContext) -> None:
    while processing.process_next_batch(ctx).more_work:
        pass


def task_of(ctx, task_id):
    with session_scope(ctx.session_factory) as session:
        return tasks.get_task(session, task_id)


def assert_created_once(clerk: FakeClerk, n: int) -> None:
    stats = clerk.stats()
    assert stats["users"] == n
    assert set(stats["created_per_email"].values()) == {1}


def test_the_sample_file_with_errors_gives_the_documented_outcome(ctx, clerk):
    with open_csv(DEMO / "teachers_with_errors.csv", "teacher") as rows:
        task_id = submit(ctx, rows=rows)
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count, task.failed_count) == (TaskStatus.COMPLETED_WITH_ERRORS, 36, 4)
    assert_created_once(clerk, 36)
    with session_scope(ctx.session_factory) as session:
        failed = {i.row_number for i in tasks.failed_items(session, task_id)}
        line16 = session.scalar(select(TaskItem).where(TaskItem.task_id == task_id, TaskItem.row_number == 16))
        clerk_ids = {u["id"] for u in clerk.users()}
        linked = set(session.scalars(select(Teacher.external_user_id)))
    assert failed == {4, 8, 12, 20}
    assert line16.status == ItemStatus.CREATED and line16.email == line16.email.strip()
    assert linked == clerk_ids


def test_importing_twice_links_every_row_to_the_same_account(ctx, clerk):
    first = submit(ctx, people(15))
    run_all(ctx)
    second = submit(ctx, people(15))
    run_all(ctx)
    with session_scope(ctx.session_factory) as session:
        ids = {n: dict(session.execute(select(TaskItem.email, TaskItem.external_user_id)
                                       .where(TaskItem.task_id == n)).all()) for n in (first, second)}
    assert task_of(ctx, second).existing_count == 15 and task_of(ctx, second).created_count == 0
    assert ids[first] == ids[second]
    assert_created_once(clerk, 15)


def test_rate_limit_answers_are_waited_out_and_no_row_fails(ctx, clerk):
    clerk.configure(rate_limit=12, window=1.0)
    task_id = submit(ctx, people(40))
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count) == (TaskStatus.COMPLETED, 40)
    assert clerk.stats()["rate_limited"] > 0
    assert_created_once(clerk, 40)


@pytest.mark.parametrize("fault", ["500", "503", "409", "commit_drop", "commit_500"])
def test_transient_and_ambiguous_failures_create_every_user_exactly_once(ctx, clerk, fault):
    clerk.fail_next(fault, count=2)
    task_id = submit(ctx, people(12))
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert (task.status, task.created_count, task.existing_count) == (TaskStatus.COMPLETED, 12, 0)
    assert_created_once(clerk, 12)


def test_a_slow_answer_past_the_timeout_is_reconciled_not_duplicated(ctx, clerk):
    clerk.fail_next("slow", count=1, delay=2.0)
    task_id = submit(ctx, people(3))
    run_all(ctx)
    assert task_of(ctx, task_id).created_count == 3
    assert_created_once(clerk, 3)


def test_a_refused_key_stops_the_task_at_once_with_a_clear_reason(ctx, clerk, caplog):
    caplog.set_level(logging.DEBUG)
    clerk.fail_next("401", count=1)
    task_id = submit(ctx, people(25))
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert task.status == TaskStatus.FAILED
    assert "CLERK_SECRET_KEY" in task.error_summary
    with session_scope(ctx.session_factory) as session:
        codes = {i.error_code for i in tasks.failed_items(session, task_id)}
    assert codes == {"not_attempted"}
    assert clerk.stats()["users"] == 0
    assert KEY not in caplog.text and KEY not in task.error_summary


def test_a_user_quota_stops_the_task_after_the_users_that_fit(ctx, clerk):
    clerk.configure(user_cap=5)
    task_id = submit(ctx, people(12))
    run_all(ctx)
    task = task_of(ctx, task_id)
    assert task.status == TaskStatus.FAILED and "quota" in task.error_summary
    assert task.created_count == 5 and task.failed_count == 7
    assert_created_once(clerk, 5)


def test_persistent_outage_hands_the_batch_back_instead_of_failing_rows(ctx, clerk):
    ctx.settings = ctx.settings.replace(provider_max_attempts=2)
    clerk.fail_next("503", count=50)
    task_id = submit(ctx, people(3))
    with pytest.raises(processing.ProviderUnavailableError):
        processing.process_next_batch(ctx)
    with session_scope(ctx.session_factory) as session:
        assert tasks.item_counts(session, task_id) == {ItemStatus.PENDING: 3}
    clerk.clear_faults()
    run_all(ctx)
    assert task_of(ctx, task_id).created_count == 3
