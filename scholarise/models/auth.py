"""The admin site's own accounts and the sign-in attempts that rate-limit them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scholarise.models.base import Base, utcnow
from scholarise.models.people import Branch


class Role:
    ADMIN = "admin"  # everything: all branches, services, email settings, deleting tasks
    STAFF = "staff"  # bulk import and the tasks of their own branch only

    ALL = (ADMIN, STAFF)


class AdminUser(Base):
    """A person who signs in to the admin site. Staff always belong to one branch."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # the sign-in name, lower-cased
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10), default=Role.STAFF)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]

    branch: Mapped[Branch | None] = relationship(lazy="joined")

    def __repr__(self) -> str:  # never the hash
        return f"<AdminUser {self.id} {self.email!r} {self.role}>"

    def __str__(self) -> str:
        return self.name or self.email

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class SignInAttempt(Base):
    """One try at signing in; recent failures per account and address throttle further tries."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_email_time", "email", "created_at"),
        Index("ix_sign_in_attempts_address_time", "address", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
