"""The outbox delivers each email once, records every attempt, retries with backoff and gives up visibly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from scholarise import outbox
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.email_settings import SmtpTransport, save_configuration
from scholarise.errors import InvalidTransitionError, NotFoundError
from scholarise.models import EmailNotification, NotificationStatus, utcnow
from scholarise.notifications import Delivery, Email
from scholarise.smtp_check import SmtpProblem
from tests.support import services
from tests.support.migrated import migrated_copy


class FakeMailer:
    """Records what it is asked to send; fails while ``failures`` has entries."""

    def __init__(self, failures: list[SmtpProblem] | None = None) -> None:
        self.sent: list[tuple[Email, SmtpTransport | None]] = []
        self.failures = list(failures or [])

    def send(self, email: Email, transport: SmtpTransport | None) -> Delivery:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((email, transport))
        return Delivery(via="fake://mailer")


def queue(factory: sessionmaker[Session], **values: object) -> int:
    with session_scope(factory) as session:
        values = {"next_attempt_at": utcnow(), **values}
        row = EmailNotification(kind="task_completed", recipients=["a@example.org", "b@example.org"],
                                subject="Done", body_text="text", body_html="<p>html</p>", **values)
        session.add(row)
        session.flush()
        return row.id


def row_of(factory: sessionmaker[Session], notification_id: int) -> EmailNotification:
    with session_scope(factory) as session:
        row = session.get(EmailNotification, notification_id)
        assert row is not None
        return row


def make_due(factory: sessionmaker[Session], notification_id: int) -> None:
    with session_scope(factory) as session:
        session.execute(update(EmailNotification).where(EmailNotification.id == notification_id)
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.replace(mail_max_attempts=3, mail_retry_min_backoff=10.0, mail_retry_max_backoff=60.0)


@pytest.fixture
def session_factory(quick: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_copy(quick, tmp_path_factory))
    yield make_session_factory(engine)
    engine.dispose()


REFUSED = SmtpProblem("refused", "127.0.0.1:2525 refused the connection")


def test_an_email_is_delivered_once_and_never_again(session_factory, quick) -> None:
    notification_id = queue(session_factory)
    mailer = FakeMailer()
    first = outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick)
    second = outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick)
    assert (first.status, second.status) == ("sent", "skipped")
    assert len(mailer.sent) == 1
    row = row_of(session_factory, notification_id)
    assert (row.status, row.attempts, row.delivered_via, row.last_error) == ("SENT", 1, "fake://mailer", None)
    email, transport = mailer.sent[0]
    assert transport is None and email.recipients == ("a@example.org", "b@example.org")
    assert email.message_id == f"<scholarise-notification-{notification_id}-" \
        f"{int(row.created_at.timestamp())}@localhost>"


def test_a_failed_attempt_is_recorded_and_scheduled_with_backoff(session_factory, quick) -> None:
    notification_id = queue(session_factory)
    outcome = outbox.deliver(session_factory, notification_id, mailer=FakeMailer([REFUSED]), settings=quick)
    assert outcome.status == "retry" and 8.5 <= (outcome.retry_in or 0) <= 10.0
    row = row_of(session_factory, notification_id)
    assert (row.status, row.attempts, row.last_error) == ("PENDING", 1, str(REFUSED))
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()


def test_a_message_that_arrives_before_the_next_attempt_is_due_does_nothing(session_factory, quick) -> None:
    notification_id = queue(session_factory)
    mailer = FakeMailer([REFUSED])
    outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick)
    early = outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick)
    assert early.status == "skipped" and row_of(session_factory, notification_id).attempts == 1
    make_due(session_factory, notification_id)
    assert outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick).status == "sent"
    assert row_of(session_factory, notification_id).attempts == 2


def test_after_the_retry_budget_the_email_is_failed_with_the_last_error(session_factory, quick) -> None:
    notification_id = queue(session_factory)
    mailer = FakeMailer([REFUSED] * 3)
    statuses = []
    for _ in range(3):
        statuses.append(outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick).status)
        make_due(session_factory, notification_id)
    assert statuses == ["retry", "retry", "failed"]
    row = row_of(session_factory, notification_id)
    assert (row.status, row.attempts, row.last_error) == ("FAILED", 3, str(REFUSED))


def test_the_backoff_doubles_up_to_the_maximum(quick) -> None:
    delays = [outbox.retry_delay(n, quick) for n in range(1, 6)]
    assert [round(d / b, 1) >= 0.85 for d, b in zip(delays, [10, 20, 40, 60, 60], strict=True)] == [True] * 5
    assert all(d <= 60 for d in delays)


def test_a_permanent_refusal_fails_at_once(session_factory, quick) -> None:
    notification_id = queue(session_factory)
    problem = SmtpProblem("recipient_refused", "refused the recipient(s)", permanent=True)
    assert outbox.deliver(session_factory, notification_id, mailer=FakeMailer([problem]), settings=quick).status == (
        "failed")
    assert row_of(session_factory, notification_id).status == "FAILED"


def test_an_unexpected_error_is_recorded_not_lost(session_factory, quick) -> None:
    class Broken:
        def send(self, email, transport):  # type: ignore[no-untyped-def]
            raise KeyError("boom")

    notification_id = queue(session_factory)
    assert outbox.deliver(session_factory, notification_id, mailer=Broken(), settings=quick).status == "retry"
    assert "KeyError" in (row_of(session_factory, notification_id).last_error or "")


def test_a_failed_email_can_be_resent_with_a_fresh_budget(session_factory, quick) -> None:
    notification_id = queue(session_factory, status=NotificationStatus.FAILED, attempts=3, last_error="x")
    with session_scope(session_factory) as session:
        outbox.resend(session, notification_id, by="admin")
    row = row_of(session_factory, notification_id)
    assert (row.status, row.attempts) == ("PENDING", 0)
    assert outbox.deliver(session_factory, notification_id, mailer=FakeMailer(), settings=quick).status == "sent"
    with session_scope(session_factory) as session, pytest.raises(InvalidTransitionError, match="already sent"):
        outbox.resend(session, notification_id)
    with session_scope(session_factory) as session, pytest.raises(NotFoundError):
        outbox.resend(session, 999)


def test_the_sweep_finds_rows_whose_message_may_be_lost(session_factory, quick) -> None:
    overdue = queue(session_factory, next_attempt_at=utcnow() - timedelta(minutes=10))
    scheduled = queue(session_factory, next_attempt_at=utcnow() + timedelta(minutes=5))
    stale = queue(session_factory, status=NotificationStatus.SENDING, claimed_at=utcnow() - timedelta(hours=1))
    queue(session_factory, status=NotificationStatus.SENT)
    with session_scope(session_factory) as session:
        periodic = dict(outbox.due_for_enqueue(session, overdue_by=timedelta(minutes=2)))
        at_start = dict(outbox.due_for_enqueue(session))
    assert set(periodic) == {overdue, stale}
    assert set(at_start) == {overdue, scheduled, stale} and 250 < at_start[scheduled] <= 300


def test_a_claim_abandoned_by_a_dead_worker_is_taken_again(session_factory, quick) -> None:
    notification_id = queue(session_factory, status=NotificationStatus.SENDING,
                            claimed_at=utcnow() - timedelta(hours=1), attempts=1)
    assert outbox.deliver(session_factory, notification_id, mailer=FakeMailer(), settings=quick).status == "sent"
    assert row_of(session_factory, notification_id).attempts == 2


def test_the_configured_server_and_sender_are_resolved_when_sending(session_factory, quick) -> None:
    with session_scope(session_factory) as session:
        save_configuration(session, None, {"host": "smtp.example.org", "port": 2525, "security": "none",
                                           "from_address": "noreply@example.org", "from_name": "Scholarise"},
                           settings=quick)
    notification_id = queue(session_factory)
    mailer = FakeMailer()
    outbox.deliver(session_factory, notification_id, mailer=mailer, settings=quick)
    email, transport = mailer.sent[0]
    assert transport is not None and (transport.host, transport.port) == ("smtp.example.org", 2525)
    assert email.sender == "Scholarise <noreply@example.org>"
    assert row_of(session_factory, notification_id).sender == "Scholarise <noreply@example.org>"


def test_outbox_counts_show_the_backlog(session_factory, quick) -> None:
    queue(session_factory)
    queue(session_factory, status=NotificationStatus.FAILED)
    with session_scope(session_factory) as session:
        counts = outbox.outbox_counts(session)
        listed = [outbox.notification_data(n) for n in outbox.list_notifications(session, status="failed")]
    assert (counts["PENDING"], counts["FAILED"], counts["SENT"]) == (1, 1, 0)
    assert counts["oldest_open_seconds"] is not None and counts["oldest_open_seconds"] >= 0
    assert [n["status"] for n in listed] == ["FAILED"]


def test_claims_retries_resend_and_the_sweep_work_on_postgresql(quick) -> None:
    base = services.require("postgres", services.postgres_url())
    with services.temporary_postgres_database(base) as url:
        pg = quick.replace(database_url=url, mail_max_attempts=2)
        upgrade(pg)
        engine = make_engine(pg)
        factory = make_session_factory(engine)
        try:
            notification_id = queue(factory)
            mailer = FakeMailer([REFUSED, REFUSED])
            assert outbox.deliver(factory, notification_id, mailer=mailer, settings=pg).status == "retry"
            assert outbox.deliver(factory, notification_id, mailer=mailer, settings=pg).status == "skipped"
            with session_scope(factory) as session:
                assert outbox.due_for_enqueue(session, overdue_by=timedelta(minutes=2)) == []
            make_due(factory, notification_id)
            assert outbox.deliver(factory, notification_id, mailer=mailer, settings=pg).status == "failed"
            with session_scope(factory) as session:
                outbox.resend(session, notification_id)
                assert [i for i, _ in outbox.due_for_enqueue(session)] == [notification_id]
            assert outbox.deliver(factory, notification_id, mailer=mailer, settings=pg).status == "sent"
            assert outbox.deliver(factory, notification_id, mailer=mailer, settings=pg).status == "skipped"
            with session_scope(factory) as session:
                counts = outbox.outbox_counts(session)
            assert (counts["SENT"], counts["PENDING"], counts["oldest_open_seconds"]) == (1, 0, None)
            assert len(mailer.sent) == 1 and row_of(factory, notification_id).attempts == 1
        finally:
            engine.dispose()
