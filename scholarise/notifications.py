"""Task emails: decide whether to send, render HTML + text, and queue the outbox row.

Rendering uses a plain Jinja2 environment over ``templates/email/``: ``.html`` templates are
autoescaped (everything from a CSV or a person — titles, addresses, error reasons — is escaped),
``.txt`` templates are not. Sending is someone else's job: a :class:`Mailer` (``actors.mailer``
wraps Flask-Mail) delivers what is rendered here, and :mod:`scholarise.outbox` drives the retries.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jinja2
from sqlalchemy.orm import Session

from scholarise import tasks as task_service
from scholarise.email_settings import Preferences, SmtpTransport, resolve_preferences
from scholarise.models import BackgroundTask, EmailNotification, NotificationStatus, TaskStatus, utcnow
from scholarise.results import write_results_csv

if TYPE_CHECKING:
    from scholarise.config import Settings

logger = logging.getLogger(__name__)

KINDS = {
    TaskStatus.COMPLETED: "task_completed",
    TaskStatus.COMPLETED_WITH_ERRORS: "task_completed_with_errors",
    TaskStatus.FAILED: "task_failed",
}
TEST_KIND = "test_message"
ERROR_ROWS_IN_BODY = 20
ATTACH_MAX_ROWS = 5000  # above this the results CSV is linked (the task page), not attached
TASK_URL = "{base}/admin/tasks/details/?id={task_id}"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: str


@dataclass(frozen=True)
class Email:
    """A rendered email, independent of how it travels."""

    subject: str
    recipients: tuple[str, ...]
    text: str
    html: str
    sender: str = ""
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    key: str = "email"  # names the .eml file in the embedded outbox


@dataclass(frozen=True)
class Delivery:
    """Where a mailer put the email, and any recipients the server refused while accepting the others."""

    via: str
    refused: dict[str, str] = field(default_factory=dict)


class Mailer(Protocol):
    """Delivers one email through ``transport``, or to the embedded outbox folder when it is None.

    Raises:
        scholarise.smtp_check.SmtpProblem: delivery failed; the kind and message say why.
    """

    def send(self, email: Email, transport: SmtpTransport | None) -> Delivery: ...


@lru_cache(maxsize=8)
def environment(templates_dir: Path) -> jinja2.Environment:
    """The email template environment: autoescape for ``.html``, strict about undefined names."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir / "email")),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# Who started a task, as a person reads it ("cli" and "system" are what the code records).
STARTED_BY = {"cli": "the command line", "system": "the system", "make run": "the demo (make run)"}


def render(name: str, context: dict[str, Any], *, settings: Settings) -> tuple[str, str]:
    """``(text, html)`` of ``templates/email/<name>.txt`` and ``<name>.html``."""
    env = environment(settings.templates_dir)
    return env.get_template(f"{name}.txt").render(context), env.get_template(f"{name}.html").render(context)


def subject_line(text: str, *, limit: int = 200) -> str:
    """One line (no header injection through a title), at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "not started"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def skip_reason(status: str, prefs: Preferences) -> str | None:
    """Why a task that ended with ``status`` sends no email under ``prefs``, or None when it sends one.

    A run that completed with errors is both a success and a failure, so either preference sends it.
    """
    if status not in KINDS:
        return f"no email is sent for a {status.lower()} task"
    if not prefs.enabled:
        return f"notifications are disabled ({prefs.source} settings)"
    wanted = {
        TaskStatus.COMPLETED: prefs.notify_on_success,
        TaskStatus.FAILED: prefs.notify_on_failure,
        TaskStatus.COMPLETED_WITH_ERRORS: prefs.notify_on_success or prefs.notify_on_failure,
    }[status]
    if not wanted:
        which = "successful runs" if status == TaskStatus.COMPLETED else "failures"
        return f"the {prefs.source} settings do not ask for emails about {which}"
    if not prefs.recipients:
        return "no admin recipients are configured (email settings or SCHOLARISE_ADMIN_EMAILS)"
    return None


def _subject(task: BackgroundTask) -> str:
    label = f"[Scholarise #{task.id}]"
    if task.status == TaskStatus.COMPLETED:
        return subject_line(f"{label} Completed: {task.title} — {task.created_count} created, "
                            f"{task.existing_count} already existed")
    if task.status == TaskStatus.COMPLETED_WITH_ERRORS:
        return subject_line(f"{label} Completed with errors: {task.title} — {task.failed_count} of {task.total} "
                            "rows failed")
    return subject_line(f"{label} Failed: {task.title} — {task.error_summary or 'no row could be imported'}")


def task_context(session: Session, task: BackgroundTask, prefs: Preferences, *, settings: Settings
                 ) -> tuple[dict[str, Any], tuple[Attachment, ...]]:
    """The template context of a task email, and the results CSV when it is attached."""
    failures, attachments = [], ()
    if prefs.include_error_log and task.failed_count:
        failures = [{"line": i.row_number, "email": i.email or "", "reason": i.error_message or i.error_code or ""}
                    for i in task_service.failed_items(session, task.id, limit=ERROR_ROWS_IN_BODY)]
        if task.total <= ATTACH_MAX_ROWS:
            stream = io.StringIO()
            write_results_csv(session, task.id, stream)
            attachments = (Attachment(f"results-task-{task.id}.csv", "text/csv", stream.getvalue()),)
    options = task.options or {}
    context = {
        "task": {
            "id": task.id, "title": task.title, "description": task.description, "status": task.status,
            "status_label": task_service.status_words(task.status).capitalize(), "user_type": task.user_type,
            "branch": task.branch.name if task.branch else "",
            "created_by": STARTED_BY.get(task.created_by or "system", task.created_by),
            "priority": task.priority, "source": options.get("source") or "", "total": task.total,
            "created": task.created_count, "existing": task.existing_count, "failed": task.failed_count,
            "duration": human_duration(task.duration_seconds), "started_at": _when(task.started_at),
            "finished_at": _when(task.finished_at), "error_summary": task.error_summary or "",
        },
        "task_url": TASK_URL.format(base=settings.public_url.rstrip("/"), task_id=task.id),
        "include_details": prefs.include_task_details,
        "include_error_log": prefs.include_error_log,
        "failures": failures,
        "more_failures": max(0, task.failed_count - len(failures)) if prefs.include_error_log else 0,
        "attachment_name": attachments[0].filename if attachments else None,
    }
    return context, attachments


def render_task_email(session: Session, task: BackgroundTask, prefs: Preferences, *, settings: Settings) -> Email:
    """The email about a finished task, addressed to ``prefs.recipients``."""
    context, attachments = task_context(session, task, prefs, settings=settings)
    text, html = render(KINDS[task.status], context, settings=settings)
    return Email(subject=_subject(task), recipients=tuple(prefs.recipients), text=text, html=html,
                 attachments=attachments)


def render_test_email(recipients: Iterable[str], transport: SmtpTransport | None, *, settings: Settings,
                      branch: str | None = None) -> Email:
    """The test message, saying which settings it went through."""
    context = {"server": transport.describe() if transport else "the embedded outbox folder",
               "source": transport.source if transport else "none", "branch": branch or "all branches (global)",
               "sent_at": _when(utcnow()), "public_url": settings.public_url}
    text, html = render(TEST_KIND, context, settings=settings)
    return Email(subject="[Scholarise] Test email", recipients=tuple(recipients), text=text, html=html,
                 sender=transport.sender if transport else "", key="test")


def queue_task_notification(session: Session, task: BackgroundTask, *, settings: Settings
                            ) -> EmailNotification | None:
    """Write the outbox row for a task that just finished, in the caller's transaction; None when none is due.

    This is the finish hook: it runs inside the transaction that finishes the task, so the email
    and the final status commit together and a crash cannot lose one without the other. The task
    log says either that an email was queued or why none was.
    """
    prefs = resolve_preferences(session, task.branch_id, settings=settings)
    reason = skip_reason(task.status, prefs)
    if reason is not None:
        if task.status in KINDS:
            task_service.log(session, task.id, f"No notification email: {reason}.")
        return None
    email = render_task_email(session, task, prefs, settings=settings)
    notification = EmailNotification(
        task_id=task.id, branch_id=task.branch_id, kind=KINDS[task.status], recipients=list(email.recipients),
        subject=email.subject, body_text=email.text, body_html=email.html,
        attachments=[{"filename": a.filename, "content_type": a.content_type, "content": a.content}
                     for a in email.attachments],
        status=NotificationStatus.PENDING, next_attempt_at=utcnow(),
    )
    session.add(notification)
    session.flush()
    task_service.log(session, task.id, f"Notification email #{notification.id} queued for "
                     f"{len(email.recipients)} recipient(s).", details={"notification_id": notification.id})
    return notification


def finish_hook(session: Session, task: BackgroundTask, *, settings: Settings) -> EmailNotification | None:
    """:func:`queue_task_notification` inside a savepoint: a broken email never blocks a task from finishing.

    If rendering or resolving fails (a bug, a broken template), the savepoint rolls back, the task
    still finishes, and the task log and the process log say the email could not be prepared.
    """
    try:
        with session.begin_nested():
            return queue_task_notification(session, task, settings=settings)
    except Exception as exc:  # noqa: BLE001 - the import outcome matters more than its email
        logger.exception("could not prepare the notification email of task %s", task.id)
        task_service.log(session, task.id, f"The notification email could not be prepared ({type(exc).__name__}); "
                         "see the worker log.", level="ERROR")
        return None


def email_for(notification: EmailNotification, *, sender: str, domain: str = "scholarise.local") -> Email:
    """The stored outbox row as an :class:`Email`; its Message-ID is stable across retries."""
    stamp = int(notification.created_at.timestamp()) if notification.created_at else 0
    return Email(
        subject=notification.subject, recipients=tuple(notification.recipients), text=notification.body_text,
        html=notification.body_html, sender=sender,
        attachments=tuple(Attachment(a["filename"], a["content_type"], a["content"])
                          for a in notification.attachments or []),
        message_id=f"<scholarise-notification-{notification.id}-{stamp}@{domain}>",
        key=f"notification-{notification.id}",
    )


def to_mime(email: Email) -> EmailMessage:
    """A standard-library MIME message: multipart/alternative (text, html), plus attachments."""
    message = EmailMessage()
    message["Subject"] = email.subject
    message["From"] = email.sender
    message["To"] = ", ".join(email.recipients)
    message["Date"] = formatdate(localtime=True)
    if email.message_id:
        message["Message-ID"] = email.message_id
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    for attachment in email.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(attachment.content.encode("utf-8"), maintype=maintype, subtype=subtype,
                               filename=attachment.filename)
    return message
