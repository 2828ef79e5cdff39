"""Background tasks, their rows and their execution log: the durable source of truth for all work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scholarise.models.base import Base, JSONType, utcnow
from scholarise.models.people import Branch


class TaskStatus:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    ACTIVE = (PENDING, RUNNING)
    FINISHED = (COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED)
    ALL = ACTIVE + FINISHED


class ItemStatus:
    PENDING = "pending"
    PROCESSING = "processing"
    CREATED = "created"
    EXISTING = "existing"
    FAILED = "failed"
    CANCELLED = "cancelled"

    OPEN = (PENDING, PROCESSING)
    DONE = (CREATED, EXISTING, FAILED, CANCELLED)


class TaskType:
    BULK_USER_CREATION = "BULK_USER_CREATION"


class BackgroundTask(Base):
    __tablename__ = "background_tasks"
    # AUTOINCREMENT on SQLite: a deleted task's number is never handed out again (emails and API
    # clients still hold it). PostgreSQL's identity columns never reuse numbers anyway.
    __table_args__ = (Index("ix_background_tasks_queue", "status", "priority", "created_at"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(40), default=TaskType.BULK_USER_CREATION)
    user_type: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default=TaskStatus.PENDING, index=True)
    priority: Mapped[int] = mapped_column(default=5)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(120))
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    total: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    existing_count: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    cancelled_count: Mapped[int] = mapped_column(default=0, server_default="0")  # rows a cancel stopped
    progress: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    progress_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(120))
    error_summary: Mapped[str | None] = mapped_column(Text)

    branch: Mapped[Branch] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<BackgroundTask {self.id} {self.status} {self.title!r}>"

    def __str__(self) -> str:
        return f"#{self.id} {self.title}"

    @property
    def is_finished(self) -> bool:
        return self.status in TaskStatus.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())


class TaskItem(Base):
    """One input row. Stored per row so progress, resume and result download are exact."""

    __tablename__ = "task_items"
    __table_args__ = (
        Index("ix_task_items_task_status_row", "task_id", "status", "row_number"),
        Index("ix_task_items_claim", "claim_token"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("background_tasks.id", ondelete="CASCADE"))
    row_number: Mapped[int]
    email: Mapped[str | None] = mapped_column(String(254))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=ItemStatus.PENDING)
    external_user_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(60))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class TaskExecutionLog(Base):
    __tablename__ = "task_execution_logs"
    __table_args__ = (Index("ix_task_execution_logs_task_time", "task_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("background_tasks.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
