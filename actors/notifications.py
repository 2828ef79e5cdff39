"""Email actors: deliver outbox rows with retries and backoff; queue them when a task finishes.

How an email survives a crash: the finish hook writes the outbox row in the transaction that
finishes the task (:func:`scholarise.notifications.finish_hook`), and only after that transaction
commits is ``send_email`` enqueued (a SQLAlchemy ``after_commit`` listener). If the process dies
between the commit and the enqueue, or a broker loses the message (the in-process broker of the
embedded mode loses everything on restart), the row is still ``PENDING`` in the database:
:func:`recover_outbox` (run when the embedded worker starts) and the periodic ``sweep_outbox``
(scheduled by the clock) enqueue it again. Duplicate messages are harmless: delivery claims the
row first (see :mod:`scholarise.outbox`).

The retry budget and backoff live in the database and Settings (``SCHOLARISE_MAIL_MAX_ATTEMPTS``,
``SCHOLARISE_MAIL_RETRY_MIN_BACKOFF``, ``SCHOLARISE_MAIL_RETRY_MAX_BACKOFF``): each failed
attempt is recorded on the row and the actor raises ``dramatiq.Retry`` with the row's delay.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache
from typing import Any

from dramatiq import Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from actors import runtime
from actors.broker import actor
from actors.mailer import FlaskMailMailer
from scholarise import notifications, outbox
from scholarise.config import Settings
from scholarise.db import session_scope
from scholarise.models import BackgroundTask

logger = logging.getLogger(__name__)

SWEEP_GRACE_SECONDS = 120.0


@lru_cache(maxsize=4)
def mailer_for(settings: Settings) -> FlaskMailMailer:
    """One Flask-Mail mailer per process and settings."""
    return FlaskMailMailer(settings)


@actor(actor_name="send_email", queue_name="emails", max_retries=100, time_limit=300_000)
def send_email(notification_id: int) -> None:
    """Deliver one outbox row; a failed attempt is recorded and retried after the row's backoff."""
    rt = runtime.current()
    outcome = outbox.deliver(rt.session_factory, notification_id, mailer=mailer_for(rt.settings),
                             settings=rt.settings)
    if outcome.retry_in is not None:
        raise Retry(outcome.message, delay=max(1, int(outcome.retry_in * 1000)))


@actor(actor_name="sweep_outbox", queue_name="emails", max_retries=0)
def sweep_outbox(overdue_seconds: float = SWEEP_GRACE_SECONDS) -> int:
    """Enqueue open rows that missed their time by ``overdue_seconds`` (their message was lost)."""
    return enqueue_due(overdue_seconds)


def enqueue_due(overdue_seconds: float | None) -> int:
    """Send ``send_email`` for open rows (all of them when ``overdue_seconds`` is None); returns how many."""
    grace = None if overdue_seconds is None else timedelta(seconds=overdue_seconds)
    with session_scope(runtime.current().session_factory) as session:
        due = outbox.due_for_enqueue(session, overdue_by=grace)
    for notification_id, delay in due:
        send_email.send_with_options(args=(notification_id,), delay=int(delay * 1000) if delay > 0 else None)
    if due:
        logger.info("outbox: %d email(s) enqueued again", len(due))
    return len(due)


def recover_outbox() -> int:
    """At process start: enqueue every open row (an in-process broker lost its messages on restart)."""
    return enqueue_due(None)


def enqueue_after_commit(session: Session, notification_id: int) -> None:
    """Enqueue ``send_email`` once ``session`` commits (never for a row that was rolled back)."""

    def enqueue(_session: Session) -> None:
        try:
            send_email.send(notification_id)
        except Exception:  # noqa: BLE001 - the row is durable; the sweep sends it later
            logger.warning("notification #%s stays in the outbox until the next sweep: the broker refused the "
                           "message", notification_id, exc_info=True)

    event.listen(session, "after_commit", enqueue, once=True)


def notify_on_finish(session: Session, task: BackgroundTask) -> None:
    """The task finish hook: write the outbox row in this transaction, enqueue its delivery after commit."""
    notification = notifications.finish_hook(session, task, settings=runtime.current().settings)
    if notification is not None:
        enqueue_after_commit(session, notification.id)


def resend(notification_id: int, *, by: str | None = None) -> dict[str, Any]:
    """Queue a failed (or pending) email again and enqueue its delivery; returns its summary.

    Raises:
        scholarise.errors.NotFoundError: no such notification.
        scholarise.errors.InvalidTransitionError: it was already sent, or is being sent now.
    """
    with session_scope(runtime.current().session_factory) as session:
        data = outbox.notification_data(outbox.resend(session, notification_id, by=by))
    send_email.send(notification_id)
    return data
