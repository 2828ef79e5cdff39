"""API tokens: how other applications authenticate to the JSON API.

Only a SHA-256 hash of each token is stored, so a copy of the database does not hand out working
tokens; the token itself is shown once when it is created. The short ``prefix`` (the first
characters of the token, not secret on its own) lets a person tell tokens apart in a listing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scholarise.models.auth import Role
from scholarise.models.base import Base, utcnow
from scholarise.models.people import Branch

__all__ = ["ApiToken", "Role"]


class ApiToken(Base):
    """A bearer token with the same roles as the admin site's users (:class:`Role`); staff tokens see one branch."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'staff')", name="role"),
        CheckConstraint("role = 'admin' OR branch_id IS NOT NULL", name="staff_branch"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(10))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    branch: Mapped[Branch | None] = relationship(lazy="joined")

    def __repr__(self) -> str:  # never the hash
        return f"<ApiToken {self.id} {self.prefix}… {self.role} {self.name!r}>"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
