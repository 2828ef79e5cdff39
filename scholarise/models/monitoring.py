"""What monitoring reads: one heartbeat row per running process, and the results of health probe runs.

A process is identified as ``host:pid`` — the same id a worker stamps on the rows it claims — so
recovery can tell from the database alone whose claims belong to a process that is gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scholarise.models.base import Base, JSONType, utcnow


class ProcessRole:
    """What a process does; one process may do several (the embedded web process does all three)."""

    WEB = "web"
    WORKER = "worker"
    SCHEDULER = "scheduler"


class CheckStatus:
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"

    ORDER = {OK: 0, WARNING: 1, ERROR: 2}

    @classmethod
    def worst(cls, statuses: list[str]) -> str:
        return max(statuses, key=lambda s: cls.ORDER.get(s, 2), default=cls.OK)


class WorkerHeartbeat(Base):
    """A running process (web, Dramatiq worker, clock) and when it last said it was alive."""

    __tablename__ = "worker_heartbeats"
    __table_args__ = (Index("ix_worker_heartbeats_last_seen", "last_seen"),)

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int]
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    current_task_id: Mapped[int | None]
    current_batch: Mapped[str | None] = mapped_column(String(200))
    stopping: Mapped[bool] = mapped_column(default=False)
    stopped_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<WorkerHeartbeat {self.id} {','.join(self.roles or [])} last_seen={self.last_seen:%H:%M:%S}>"


class HealthRun(Base):
    """One probe run. A scheduled run owns its slot (``round(time / interval)``): the unique slot is the
    cluster-wide lock that lets exactly one run happen per interval however many clocks enqueue it."""

    __tablename__ = "health_runs"
    __table_args__ = (Index("ix_health_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slot: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")  # schedule | startup | manual | restart
    worker_id: Mapped[str | None] = mapped_column(String(120))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(10))  # the worst check status, once finished

    checks: Mapped[list[HealthCheck]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                                     passive_deletes=True, order_by="HealthCheck.id")


class HealthCheck(Base):
    """The result of one probe (database, broker, workers, ...) within a run."""

    __tablename__ = "health_checks"
    __table_args__ = (Index("ix_health_checks_checked_at", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("health_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[HealthRun] = relationship(back_populates="checks")
