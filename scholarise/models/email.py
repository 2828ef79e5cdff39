"""Email settings (global or per branch) and the outbox: an email is a row first and a delivery second."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scholarise.models.base import Base, JSONType, utcnow

GLOBAL_SCOPE = "global"


def scope_for(branch_id: int | None) -> str:
    """``global`` or ``branch:<id>``: the unique key that allows one configuration per scope.

    A UNIQUE constraint on ``branch_id`` alone cannot stop two global rows, because NULLs never
    compare equal; the scope column makes the database enforce it on SQLite and PostgreSQL alike.
    """
    return GLOBAL_SCOPE if branch_id is None else f"branch:{branch_id}"


class Security:
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"

    ALL = (NONE, STARTTLS, SSL)


class NotificationStatus:
    PENDING = "PENDING"  # waiting for (another) delivery attempt
    SENDING = "SENDING"  # claimed by a worker right now
    SENT = "SENT"  # accepted by the SMTP server (or written to the embedded outbox folder)
    FAILED = "FAILED"  # the retry budget ran out, or every recipient was refused; can be re-sent

    OPEN = (PENDING, SENDING)
    ALL = (PENDING, SENDING, SENT, FAILED)


class EmailConfiguration(Base):
    """SMTP settings and notification preferences for one branch, or the global default (no branch).

    The password is only ever stored encrypted (``password_encrypted``, a Fernet token); see
    :mod:`scholarise.crypto`. Empty host means "use the next level's SMTP server"; empty
    recipients mean "use the next level's recipients" (see :mod:`scholarise.email_settings`).
    """

    __tablename__ = "email_configurations"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(40), unique=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="CASCADE"), index=True)
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None]
    security: Mapped[str] = mapped_column(String(10), default=Security.STARTTLS)
    username: Mapped[str | None] = mapped_column(String(255))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(String(254))
    from_name: Mapped[str | None] = mapped_column(String(120))
    recipients: Mapped[list[str]] = mapped_column(JSONType, default=list)
    notify_on_success: Mapped[bool] = mapped_column(default=True)
    notify_on_failure: Mapped[bool] = mapped_column(default=True)
    include_task_details: Mapped[bool] = mapped_column(default=True)
    include_error_log: Mapped[bool] = mapped_column(default=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(120))

    def __repr__(self) -> str:  # never the password, not even encrypted
        return f"<EmailConfiguration {self.id} {self.scope} {self.host or '-'}:{self.port or '-'} {self.security}>"

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


class EmailNotification(Base):
    """One email in the outbox: written in the transaction that finishes its task, delivered by a worker."""

    __tablename__ = "email_notifications"
    __table_args__ = (Index("ix_email_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("background_tasks.id", ondelete="SET NULL"), index=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(40))
    recipients: Mapped[list[str]] = mapped_column(JSONType, default=list)
    subject: Mapped[str] = mapped_column(String(255))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(20), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(400))
    delivered_via: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<EmailNotification {self.id} {self.kind} {self.status} attempts={self.attempts}>"
