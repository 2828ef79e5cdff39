"""The outbox: deliver a queued email once, record every attempt, retry with backoff, give up visibly.

A delivery claims its row with a compare-and-set (``PENDING`` and due -> ``SENDING``), talks to the
SMTP server with no transaction open, then records the outcome guarded by that claim. So two
messages for the same row (a retry plus a sweep, or a re-send) never deliver it twice, a ``SENT``
row is never sent again, and a message that arrives before the row's ``next_attempt_at`` is a
duplicate and does nothing. A worker that dies while ``SENDING`` leaves a claim that expires after
:data:`CLAIM_LEASE`, and the sweep picks the row up again.

Delivery is at-least-once at the SMTP boundary: if a process dies after the server accepted the
message but before the row says ``SENT``, it is sent again; the Message-ID stays the same, so mail
clients show it once.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from scholarise import tasks as task_service
from scholarise.crypto import DecryptionError
from scholarise.db import session_scope
from scholarise.email_settings import default_sender, resolve_transport
from scholarise.errors import InvalidTransitionError, NotFoundError
from scholarise.models import EmailNotification, NotificationStatus, utcnow
from scholarise.notifications import Delivery, Email, Mailer, email_for
from scholarise.smtp_check import SmtpProblem

if TYPE_CHECKING:
    from scholarise.config import Settings

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=10)
EARLY_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class DeliveryOutcome:
    """``sent``, ``retry`` (in ``retry_in`` seconds), ``failed`` (for good) or ``skipped`` (nothing to do)."""

    status: str
    message: str
    retry_in: float | None = None


def retry_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt: doubling from the minimum, capped, with a little jitter downwards."""
    base = settings.mail_retry_min_backoff * 2 ** max(0, attempts - 1)
    return max(settings.mail_retry_min_backoff, min(settings.mail_retry_max_backoff, base) * random.uniform(0.85, 1.0))


def _due(now: datetime) -> Any:
    return or_(
        (EmailNotification.status == NotificationStatus.PENDING)
        & or_(EmailNotification.next_attempt_at.is_(None), EmailNotification.next_attempt_at <= now + EARLY_TOLERANCE),
        (EmailNotification.status == NotificationStatus.SENDING) & (EmailNotification.claimed_at < now - CLAIM_LEASE),
    )


def claim(session: Session, notification_id: int, *, now: datetime) -> bool:
    """Take the row for one attempt (counted now, so an attempt that crashes still counts)."""
    result = session.execute(
        update(EmailNotification)
        .where(EmailNotification.id == notification_id, _due(now))
        .values(status=NotificationStatus.SENDING, claimed_at=now, attempts=EmailNotification.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def deliver(session_factory: sessionmaker[Session], notification_id: int, *, mailer: Mailer,
            settings: Settings) -> DeliveryOutcome:
    """One delivery attempt of an outbox row: claim, send through ``mailer``, record the outcome."""
    now = utcnow()
    problem: SmtpProblem | None = None
    with session_scope(session_factory) as session:
        row = session.get(EmailNotification, notification_id)
        if row is None:
            return DeliveryOutcome("skipped", f"There is no notification #{notification_id}.")
        if not claim(session, notification_id, now=now):
            return DeliveryOutcome("skipped", f"Notification #{notification_id} is {row.status.lower()} and not "
                                   "due now; nothing to do.")
        session.refresh(row)
        attempt = row.attempts
        try:
            transport = resolve_transport(session, row.branch_id, settings=settings)
        except DecryptionError as exc:
            transport, problem = None, SmtpProblem("config", str(exc))
        sender = transport.sender if transport else default_sender(settings)
        email = email_for(row, sender=sender, domain=parseaddr(sender)[1].rpartition("@")[2] or "scholarise.local")
    delivery: Delivery | None = None
    if problem is None:
        delivery, problem = _send(mailer, email, transport)
    with session_scope(session_factory) as session:
        if delivery is not None:
            return record_sent(session, notification_id, delivery, sender=sender, attempt=attempt)
        assert problem is not None
        return record_failure(session, notification_id, problem, attempt=attempt, settings=settings)


def _send(mailer: Mailer, email: Email, transport: Any) -> tuple[Delivery | None, SmtpProblem | None]:
    try:
        return mailer.send(email, transport), None
    except SmtpProblem as problem:
        return None, problem
    except Exception as exc:  # noqa: BLE001 - a bug must not lose the email: it is recorded and retried
        logger.exception("unexpected error while sending %s", email.key)
        return None, SmtpProblem("unexpected", f"Unexpected error while sending: {type(exc).__name__}.")


def record_sent(session: Session, notification_id: int, delivery: Delivery, *, sender: str,
                attempt: int) -> DeliveryOutcome:
    """Mark the claimed row SENT (with any refused recipients noted)."""
    now = utcnow()
    refused = "; ".join(f"{a} ({why})" for a, why in delivery.refused.items()) or None
    session.execute(
        update(EmailNotification)
        .where(EmailNotification.id == notification_id, EmailNotification.status == NotificationStatus.SENDING)
        .values(status=NotificationStatus.SENT, sent_at=now, delivered_via=delivery.via[:500], sender=sender[:400],
                claimed_at=None, next_attempt_at=None,
                last_error=f"Accepted for the others, refused: {refused}" if refused else None)
        .execution_options(synchronize_session=False)
    )
    row = session.get(EmailNotification, notification_id)
    message = f"Notification email #{notification_id} sent via {delivery.via} (attempt {attempt})."
    if row is not None and row.task_id is not None:
        task_service.log(session, row.task_id, message, details={"notification_id": notification_id})
    else:
        logger.info(message)
    return DeliveryOutcome("sent", message)


def record_failure(session: Session, notification_id: int, problem: SmtpProblem, *, attempt: int,
                   settings: Settings) -> DeliveryOutcome:
    """Back to PENDING with the next attempt scheduled, or FAILED when the budget is spent or the failure is final."""
    now = utcnow()
    row = session.get(EmailNotification, notification_id)
    task_id = row.task_id if row is not None else None
    if problem.permanent or attempt >= settings.mail_max_attempts:
        session.execute(
            update(EmailNotification)
            .where(EmailNotification.id == notification_id, EmailNotification.status == NotificationStatus.SENDING)
            .values(status=NotificationStatus.FAILED, last_error=str(problem), claimed_at=None, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        why = "the failure is permanent" if problem.permanent else f"{attempt} attempts"
        message = f"Notification email #{notification_id} was not delivered ({why}): {problem}"
        if task_id is not None:
            task_service.log(session, task_id, message + " An admin can re-send it.", level="ERROR",
                             details={"notification_id": notification_id, "kind": problem.kind})
        logger.error(message)
        return DeliveryOutcome("failed", message)
    delay = retry_delay(attempt, settings)
    session.execute(
        update(EmailNotification)
        .where(EmailNotification.id == notification_id, EmailNotification.status == NotificationStatus.SENDING)
        .values(status=NotificationStatus.PENDING, last_error=str(problem), claimed_at=None,
                next_attempt_at=now + timedelta(seconds=delay))
        .execution_options(synchronize_session=False)
    )
    message = (f"Notification email #{notification_id} attempt {attempt} of {settings.mail_max_attempts} failed "
               f"({problem.kind}): {problem} Next attempt in {delay:.0f} s.")
    logger.warning(message)
    return DeliveryOutcome("retry", message, retry_in=delay)


def resend(session: Session, notification_id: int, *, by: str | None = None) -> EmailNotification:
    """Queue a FAILED email again with a fresh retry budget (a PENDING one is simply made due now).

    Raises:
        NotFoundError: no such notification.
        InvalidTransitionError: it was already sent, or is being sent right now.
    """
    row = session.get(EmailNotification, notification_id)
    if row is None:
        raise NotFoundError(f"There is no notification #{notification_id}.")
    if row.status == NotificationStatus.SENT:
        raise InvalidTransitionError(f"Notification #{notification_id} was already sent ({row.sent_at:%Y-%m-%d %H:%M}"
                                     " UTC); it is not sent twice.")
    if row.status == NotificationStatus.SENDING and row.claimed_at and row.claimed_at > utcnow() - CLAIM_LEASE:
        raise InvalidTransitionError(f"Notification #{notification_id} is being sent right now.")
    if row.status == NotificationStatus.FAILED:
        row.attempts = 0
    row.status, row.next_attempt_at, row.claimed_at = NotificationStatus.PENDING, utcnow(), None
    if row.task_id is not None:
        task_service.log(session, row.task_id, f"Notification email #{notification_id} queued again by "
                         f"{by or 'system'}.", details={"notification_id": notification_id})
    session.flush()
    return row


def due_for_enqueue(session: Session, *, overdue_by: timedelta | None = None, limit: int = 1000
                    ) -> list[tuple[int, float]]:
    """``(id, delay_seconds)`` of open rows whose delivery message may be missing.

    Args:
        overdue_by: None after a start (every open row; a scheduled retry keeps its delay), or a
            grace period for the periodic sweep (only rows that missed their time by that much).
    """
    now = utcnow()
    query = select(EmailNotification.id, EmailNotification.next_attempt_at).where(
        EmailNotification.status.in_(NotificationStatus.OPEN)
    )
    if overdue_by is not None:
        query = query.where(_due(now - overdue_by))
    else:
        query = query.where(or_(EmailNotification.status == NotificationStatus.PENDING, _due(now)))
    rows = session.execute(query.order_by(EmailNotification.id).limit(limit)).all()
    return [(rid, max(0.0, (due - now).total_seconds()) if due else 0.0) for rid, due in rows]


def list_notifications(session: Session, *, status: str | None = None, task_id: int | None = None,
                       limit: int = 50, offset: int = 0) -> list[EmailNotification]:
    """Newest first, optionally of one status or one task."""
    query = select(EmailNotification).order_by(EmailNotification.id.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(EmailNotification.status == status.upper())
    if task_id is not None:
        query = query.where(EmailNotification.task_id == task_id)
    return list(session.scalars(query))


def notification_data(row: EmailNotification, *, bodies: bool = False) -> dict[str, Any]:
    """JSON-ready view of an outbox row (bodies only on request; attachments by name)."""
    data = {
        "id": row.id, "task_id": row.task_id, "branch_id": row.branch_id, "kind": row.kind,
        "recipients": list(row.recipients or []), "subject": row.subject, "status": row.status,
        "attempts": row.attempts, "last_error": row.last_error, "sender": row.sender,
        "delivered_via": row.delivered_via, "created_at": row.created_at, "next_attempt_at": row.next_attempt_at,
        "sent_at": row.sent_at, "attachments": [a.get("filename") for a in row.attachments or []],
    }
    if bodies:
        data.update(body_text=row.body_text, body_html=row.body_html)
    return data


def outbox_counts(session: Session) -> dict[str, Any]:
    """Rows per status and the age in seconds of the oldest open one (what the health probe reads)."""
    counts = dict(session.execute(
        select(EmailNotification.status, func.count()).group_by(EmailNotification.status)).all())
    oldest = session.scalar(select(func.min(EmailNotification.created_at))
                            .where(EmailNotification.status.in_(NotificationStatus.OPEN)))
    if oldest is not None and oldest.tzinfo is None:  # SQLite aggregate values skip the type's result processor
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    return {**{s: counts.get(s, 0) for s in NotificationStatus.ALL},
            "oldest_open_seconds": (utcnow() - oldest).total_seconds() if oldest else None}
