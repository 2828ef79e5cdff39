"""The task service: creating tasks, guarded transitions, cancel / retry / delete, results export."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select, update

from scholarise import tasks
from scholarise.csvfile import open_csv
from scholarise.db import session_scope
from scholarise.errors import InputError, InvalidTransitionError, NotFoundError
from scholarise.models import BackgroundTask, ItemStatus, TaskItem, TaskStatus
from scholarise.results import safe_cell, write_results_csv
from tests.conftest import DEMO

PEOPLE = [
    {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
    {"first_name": "Alan", "last_name": "Turing", "email": "alan@example.org"},
    {"first_name": "", "last_name": "Nobody", "email": "nobody@example.org"},
    {"first_name": "Ada", "last_name": "Again", "email": " ADA@example.org "},
]


def make_task(session, items=PEOPLE, **payload):
    body = {"type": "teacher", "branch": "Main", "items": items, **payload}
    return tasks.create_bulk_task(session, "BULK_USER_CREATION", "Import", "", body)


def test_items_become_pending_rows_and_invalid_ones_fail_with_their_reason(session):
    task = make_task(session)
    rows = {i.row_number: i for i in session.scalars(select(TaskItem).where(TaskItem.task_id == task.id))}
    assert task.total == 4 and task.failed_count == 2 and task.status == TaskStatus.PENDING
    assert rows[1].status == rows[2].status == ItemStatus.PENDING
    assert rows[3].status == ItemStatus.FAILED and "first name is required" in rows[3].error_message
    assert rows[4].error_message == "duplicate of item 1 in this request"
    assert rows[1].data["email"] == "ada@example.org"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "wizard"}, "User type must be one of teacher, employee, student"),
        ({"branch": ""}, "A branch name is required"),
        ({"priority": 0}, "Priority must be a whole number from 1"),
        ({"priority": "high"}, "Priority must be a whole number from 1"),
        ({"items": []}, "There are no rows to import."),
        ({"items": "ada@example.org"}, "needs 'items'"),
        ({"batch_size": 0}, "Batch size must be a whole number from 1 to 500"),
    ],
)
def test_unusable_payloads_are_refused_and_store_nothing(session_factory, payload, message):
    with pytest.raises(InputError, match=message), session_scope(session_factory) as session:
        make_task(session, **payload)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(BackgroundTask)) == 0
        assert session.scalar(select(func.count()).select_from(TaskItem)) == 0


def test_a_file_that_fails_half_way_leaves_no_task_behind(session_factory, tmp_path):
    path = tmp_path / "big.csv"
    lines = ["first_name,email"] + [f"P{i},p{i}@example.org" for i in range(30)]
    path.write_text("\n".join(lines))
    with pytest.raises(InputError), session_scope(session_factory) as session:
        with open_csv(path, "teacher", max_rows=25) as rows:
            tasks.create_bulk_task(session, "BULK_USER_CREATION", "Big", "", {"type": "teacher", "branch": "Main"},
                                   rows=rows)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(BackgroundTask)) == 0


def test_teachers_with_errors_file_stores_the_expected_failures(session):
    with open_csv(DEMO / "teachers_with_errors.csv", "teacher") as rows:
        task = tasks.create_bulk_task(session, "BULK_USER_CREATION", "Errors", "",
                                      {"type": "teacher", "branch": "Main"}, rows=rows)
    failed = {i.row_number: i.error_message for i in tasks.failed_items(session, task.id)}
    assert task.total == 40
    assert sorted(failed) == [4, 8, 12, 20]
    assert "not a valid email" in failed[4]
    assert "duplicate of line 6" in failed[12]
    assert "not a valid date" in failed[20]


def test_status_changes_are_compare_and_set(session):
    task = make_task(session)
    assert tasks.transition(session, task.id, [TaskStatus.PENDING], TaskStatus.RUNNING)
    assert not tasks.transition(session, task.id, [TaskStatus.PENDING], TaskStatus.RUNNING)


def test_cancel_marks_waiting_rows_and_cannot_cancel_twice(session):
    task = make_task(session)
    tasks.cancel_task(session, task.id, by="tester")
    assert task.status == TaskStatus.CANCELLED
    assert tasks.item_counts(session, task.id) == {ItemStatus.CANCELLED: 2, ItemStatus.FAILED: 2}
    # A cancel does not make the task look finished: stopped rows are counted apart from worked ones.
    assert (task.processed, task.cancelled_count, task.progress) == (2, 2, 50.0)
    assert tasks.summary(task)["cancelled"] == 2
    with pytest.raises(InvalidTransitionError, match="is cancelled and can no longer be cancelled"):
        tasks.cancel_task(session, task.id)


def test_retry_explains_when_every_failed_row_failed_validation(session):
    task = make_task(session, items=PEOPLE[:3])  # one row without a first name
    session.execute(update(BackgroundTask).where(BackgroundTask.id == task.id)
                    .values(status=TaskStatus.COMPLETED_WITH_ERRORS))
    with pytest.raises(InvalidTransitionError, match="1 failed row.s. failed validation .* Fix them in the file"):
        tasks.retry_failed_rows(session, task.id)


def test_retry_requeues_cancelled_rows_but_not_invalid_ones(session):
    task = make_task(session)
    tasks.cancel_task(session, task.id)
    assert tasks.retry_failed_rows(session, task.id) == 2
    session.refresh(task)
    assert task.status == TaskStatus.PENDING
    assert tasks.item_counts(session, task.id)[ItemStatus.PENDING] == 2


def test_running_tasks_cannot_be_deleted_or_retried(session):
    task = make_task(session)
    with pytest.raises(InvalidTransitionError, match="cancel it before deleting"):
        tasks.delete_task(session, task.id)
    with pytest.raises(InvalidTransitionError, match="retry once it has finished"):
        tasks.retry_failed_rows(session, task.id)
    tasks.cancel_task(session, task.id)
    tasks.delete_task(session, task.id)
    with pytest.raises(NotFoundError):
        tasks.get_task(session, task.id)


@pytest.mark.parametrize("value", ["=HYPERLINK(\"x\")", "+1+1", "-2", "@SUM(A1)", "\tx"])
def test_spreadsheet_formulas_are_neutralised(value):
    assert safe_cell(value).startswith("'")


def test_results_csv_lists_every_row_safely(session):
    items = [{"first_name": "=cmd|' /C calc'!A0", "last_name": "X", "email": "evil@example.org"}]
    task = make_task(session, items=items + PEOPLE[:1])
    buffer = io.StringIO()
    assert write_results_csv(session, task.id, buffer) == 2
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert rows[0]["first_name"].startswith("'=")
    assert [r["line"] for r in rows] == ["1", "2"]


def test_external_ids_are_stable_per_email():
    assert tasks.external_id_for(" Ada@Example.org") == tasks.external_id_for("ada@example.org")
    assert tasks.external_id_for("a@example.org") != tasks.external_id_for("b@example.org")


def test_rows_with_unstorable_characters_fail_and_are_kept_readable(session):
    task = make_task(session, items=[{"first_name": "Ada\x00", "last_name": "L\ud800", "email": "a\x00@example.org"}])
    item = tasks.failed_items(session, task.id)[0]
    assert "cannot be stored" in item.error_message
    assert "\x00" not in item.email and "\x00" not in item.data["first_name"]


def test_only_rows_that_can_succeed_again_count_as_retryable(session):
    task = make_task(session)  # 2 valid rows, 2 invalid
    assert tasks.retryable_count(session, task.id) == 0  # still pending
    tasks.cancel_task(session, task.id)
    assert tasks.retryable_count(session, task.id) == 2  # the cancelled ones, not the invalid ones


def test_a_deleted_tasks_number_is_never_given_to_a_new_task(any_db_settings):
    """Emails and API clients keep task numbers: a new task must never answer to a deleted one's."""
    from scholarise.db import make_engine, make_session_factory, upgrade

    upgrade(any_db_settings)
    engine = make_engine(any_db_settings)
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as s:
            newest = make_task(s, items=PEOPLE[:1]).id
            tasks.cancel_task(s, newest)
            tasks.delete_task(s, newest)
        with session_scope(factory) as s:
            assert make_task(s, items=PEOPLE[:1]).id > newest
    finally:
        engine.dispose()
