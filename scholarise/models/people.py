"""Branches (campuses), the people imported into them, and the embedded provider's accounts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from scholarise.models.base import Base, JSONType, utcnow


class Branch(Base):
    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Branch {self.id} {self.name!r}>"

    def __str__(self) -> str:
        return self.name


class _Person:
    """Columns every imported person has; the email is the identity shared with the provider."""

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    external_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} <{self.email}>".strip()


class Teacher(_Person, Base):
    __tablename__ = "teachers"

    subject: Mapped[str | None] = mapped_column(String(100))
    employee_code: Mapped[str | None] = mapped_column(String(40))
    date_of_joining: Mapped[date | None]


class Employee(_Person, Base):
    __tablename__ = "employees"

    designation: Mapped[str | None] = mapped_column(String(100))
    department: Mapped[str | None] = mapped_column(String(100))
    employee_code: Mapped[str | None] = mapped_column(String(40))


class Student(_Person, Base):
    __tablename__ = "students"

    admission_number: Mapped[str | None] = mapped_column(String(40))
    class_name: Mapped[str | None] = mapped_column(String(20))
    section: Mapped[str | None] = mapped_column(String(20))
    date_of_birth: Mapped[date | None]
    guardian_name: Mapped[str | None] = mapped_column(String(200))
    guardian_phone: Mapped[str | None] = mapped_column(String(40))


PERSON_MODELS: dict[str, type[Teacher] | type[Employee] | type[Student]] = {
    "teacher": Teacher,
    "employee": Employee,
    "student": Student,
}


class LocalAccount(Base):
    """An account of the embedded :class:`~scholarise.providers.local.LocalProvider` (no Clerk key set)."""

    __tablename__ = "local_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    private_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
