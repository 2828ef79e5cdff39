"""Task emails: who gets one and when, what they say, and that HTML escapes everything from a CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scholarise import notifications, processing, tasks
from scholarise.config import Settings
from scholarise.db import session_scope
from scholarise.email_settings import save_configuration
from scholarise.models import EmailNotification, TaskExecutionLog, TaskStatus
from scholarise.processing import WorkContext
from scholarise.providers.local import LocalProvider
from tests.support.migrated import migrated_copy

XSS = "<script>alert('x')</script>"

@pytest.fixture
def migrated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shared fixture's database, copied from a once-migrated template (fast)."""
    return migrated_copy(settings, tmp_path_factory)



def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(start, start + n)]


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    yield session_factory


def configure(factory: sessionmaker[Session], settings: Settings, branch: str | None = None, **data: object) -> None:
    with session_scope(factory) as session:
        branch_id = tasks.get_or_create_branch(session, branch).id if branch else None
        save_configuration(session, branch_id, {"recipients": ["admin@example.org", "head@example.org"], **data},
                           settings=settings)


def run_import(factory: sessionmaker[Session], settings: Settings, items: list[dict[str, str]], *,
               title: str = "Import teachers", branch: str = "Main", created_by: str = "alice") -> int:
    with session_scope(factory) as session:
        task = tasks.create_bulk_task(session, "BULK_USER_CREATION", title, "Spring intake",
                                      {"type": "teacher", "branch": branch, "items": items, "source": "teachers.csv"},
                                      created_by=created_by)
        task_id = task.id
    ctx = WorkContext(factory, LocalProvider(factory), settings, "test-host:1", sleep=lambda s: None,
                      on_task_finished=[lambda s, t: notifications.finish_hook(s, t, settings=settings)])
    while processing.process_next_batch(ctx).more_work:
        pass
    return task_id


def outbox(factory: sessionmaker[Session]) -> list[EmailNotification]:
    with session_scope(factory) as session:
        return list(session.scalars(select(EmailNotification).order_by(EmailNotification.id)))


def task_log(factory: sessionmaker[Session], task_id: int) -> str:
    with session_scope(factory) as session:
        return "\n".join(session.scalars(select(TaskExecutionLog.message).where(TaskExecutionLog.task_id == task_id)))


def test_a_clean_run_queues_one_email_with_the_counts_in_both_bodies(factory, settings) -> None:
    configure(factory, settings)
    task_id = run_import(factory, settings, people(12))
    [email] = outbox(factory)
    assert (email.task_id, email.kind, email.status, email.attempts) == (task_id, "task_completed", "PENDING", 0)
    assert email.recipients == ["admin@example.org", "head@example.org"]
    assert email.subject == f"[Scholarise #{task_id}] Completed: Import teachers — 12 created, 0 already existed"
    for body in (email.body_text, email.body_html):
        assert "12" in body and "already existed" in body.lower() and "Spring intake" in body
        assert f"/admin/tasks/details/?id={task_id}" in body
    assert "Created:          12" in email.body_text
    assert email.attachments == []
    assert f"Notification email #{email.id} queued for 2 recipient(s)." in task_log(factory, task_id)


def test_the_summary_sentence_agrees_with_its_numbers(factory, settings) -> None:
    configure(factory, settings)
    run_import(factory, settings, people(1))
    run_import(factory, settings, people(2))  # the first person again, and one new
    first, second = outbox(factory)
    assert "Every row was imported: 1 account created." in first.body_text
    assert "Every row was imported: 1 account created; 1 already existed and was linked." in second.body_text
    assert "1 already existed and was linked." in second.body_html
    assert "Started by: alice" in first.body_text  # a person's name as it is; the code's own names in words


def test_a_task_started_from_the_command_line_says_so_in_words(factory, settings) -> None:
    configure(factory, settings)
    run_import(factory, settings, people(1), created_by="cli")
    [email] = outbox(factory)
    assert "Started by: the command line" in email.body_text and "the command line" in email.body_html


def test_rows_with_script_tags_are_escaped_in_html_and_plain_in_text(factory, settings) -> None:
    configure(factory, settings)
    items = [*people(3), {"first_name": XSS, "last_name": "X", "email": f"{XSS}@example.org"}]
    run_import(factory, settings, items, title=f"Import {XSS}")
    [email] = outbox(factory)
    assert email.kind == "task_completed_with_errors"
    assert "<script>" not in email.body_html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in email.body_html
    assert XSS in email.body_text  # the text part is not HTML: it shows what was in the file


def test_an_import_with_errors_lists_the_failed_rows_and_attaches_the_results(factory, settings) -> None:
    configure(factory, settings)
    items = [*people(5), {"first_name": "Bad", "email": "not-an-email"}, {"first_name": "", "email": "x@example.org"}]
    task_id = run_import(factory, settings, items)
    [email] = outbox(factory)
    assert email.subject == f"[Scholarise #{task_id}] Completed with errors: Import teachers — 2 of 7 rows failed"
    assert "line 7" in email.body_text and "not-an-email" in email.body_text
    [attachment] = email.attachments
    assert attachment["filename"] == f"results-task-{task_id}.csv"
    assert attachment["content"].count("\r\n") == 8  # header + 7 rows


def test_the_error_log_and_details_are_left_out_when_the_settings_say_so(factory, settings) -> None:
    configure(factory, settings, include_error_log=False, include_task_details=False)
    run_import(factory, settings, [*people(2), {"first_name": "Bad", "email": "not-an-email"}])
    [email] = outbox(factory)
    assert "not-an-email" not in email.body_text and "Spring intake" not in email.body_text
    assert email.attachments == []


def test_a_run_where_every_row_fails_sends_the_failure_email(factory, settings) -> None:
    configure(factory, settings)
    task_id = run_import(factory, settings, [{"first_name": "A", "email": "nope"}, {"first_name": "B", "email": "no"}])
    [email] = outbox(factory)
    assert email.kind == "task_failed"
    assert email.subject.startswith(f"[Scholarise #{task_id}] Failed: Import teachers — No row could be imported")


def test_disabled_notifications_queue_nothing_and_the_task_log_says_why(factory, settings) -> None:
    configure(factory, settings, enabled=False)
    task_id = run_import(factory, settings, people(3))
    assert outbox(factory) == []
    assert "No notification email: notifications are disabled (global settings)." in task_log(factory, task_id)


def test_on_failure_only_sends_nothing_for_a_clean_run(factory, settings) -> None:
    configure(factory, settings, notify_on_success=False)
    task_id = run_import(factory, settings, people(3))
    assert outbox(factory) == []
    assert "do not ask for emails about successful runs" in task_log(factory, task_id)
    run_import(factory, settings, [*people(2, start=10), {"first_name": "Bad", "email": "bad"}])
    assert [e.kind for e in outbox(factory)] == ["task_completed_with_errors"]


def test_on_success_only_sends_nothing_when_every_row_failed(factory, settings) -> None:
    configure(factory, settings, notify_on_failure=False)
    run_import(factory, settings, [{"first_name": "A", "email": "nope"}])
    assert outbox(factory) == []


def test_branch_preferences_override_global_ones(factory, settings) -> None:
    configure(factory, settings)
    configure(factory, settings, branch="North", enabled=False)
    run_import(factory, settings, people(2), branch="North")
    assert outbox(factory) == []
    run_import(factory, settings, people(2, start=5), branch="South")
    assert len(outbox(factory)) == 1


def test_without_recipients_anywhere_nothing_is_queued(factory, settings) -> None:
    task_id = run_import(factory, settings, people(2))
    assert outbox(factory) == []
    assert "no admin recipients are configured" in task_log(factory, task_id)


def test_environment_recipients_are_used_when_nothing_is_stored(factory, settings) -> None:
    env = settings.replace(admin_emails=("ops@example.org",))
    run_import(factory, env, people(2))
    assert [e.recipients for e in outbox(factory)] == [["ops@example.org"]]


def test_a_broken_email_never_stops_a_task_from_finishing(factory, settings, tmp_path: Path) -> None:
    configure(factory, settings)
    (tmp_path / "broken" / "email").mkdir(parents=True)
    broken = settings.replace(templates_dir=tmp_path / "broken")
    task_id = run_import(factory, broken, people(2))
    with session_scope(factory) as session:
        assert tasks.get_task(session, task_id).status == TaskStatus.COMPLETED
    assert outbox(factory) == []
    assert "The notification email could not be prepared (TemplateNotFound)" in task_log(factory, task_id)


def test_a_subject_is_one_line_whatever_the_title() -> None:
    assert notifications.subject_line("Import\r\nBcc: evil@example.org  teachers") == (
        "Import Bcc: evil@example.org teachers")
    assert len(notifications.subject_line("x" * 500)) == 200


def test_the_test_message_renders_in_both_forms(settings) -> None:
    email = notifications.render_test_email(["a@example.org"], None, settings=settings, branch=XSS)
    assert "&lt;script&gt;" in email.html and "<script>" not in email.html
    assert "embedded outbox folder" in email.text
    mime = notifications.to_mime(email)
    assert [p.get_content_type() for p in mime.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def test_deleting_a_finished_task_keeps_its_email_in_the_outbox(factory, settings) -> None:
    configure(factory, settings)
    task_id = run_import(factory, settings, people(2))
    with session_scope(factory) as session:
        tasks.delete_task(session, task_id)
    [email] = outbox(factory)
    assert email.task_id is None and email.kind == "task_completed"
