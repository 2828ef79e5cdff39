"""Health probes: is the database answering, the broker reachable, a worker and the scheduler alive,
the mail outbox draining, any task stuck? Results are dataclasses, stored per run with bounded retention.

A probe never raises: a failure *is* its result. The broker is probed through an injected callable
(``ping() -> None`` that raises when the broker is unreachable), so this module needs no Dramatiq.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scholarise.heartbeats import describe
from scholarise.heartbeats import prune as prune_heartbeats
from scholarise.models import (
    BackgroundTask,
    CheckStatus,
    HealthCheck,
    HealthRun,
    ItemStatus,
    ProcessRole,
    TaskItem,
    TaskStatus,
    utcnow,
)

if TYPE_CHECKING:
    from scholarise.config import Settings

OK, WARNING, ERROR = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.ERROR
OUTBOX_WARN_AFTER = timedelta(minutes=15)
PROBE_NAMES = ("database", "broker", "workers", "scheduler", "outbox", "stuck_tasks")


@dataclass(frozen=True)
class ProbeResult:
    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(name: str, probe: Callable[[], ProbeResult], session: Session | None = None) -> ProbeResult:
    started = time.perf_counter()
    try:
        if session is None:
            result = probe()
        else:  # a savepoint, so a failed query does not poison the transaction the next probes use
            with session.begin_nested():
                result = probe()
    except Exception as exc:  # noqa: BLE001 - a failing probe is a result, not a crash
        first_line = (str(exc).splitlines() or [""])[0]  # no SQL, no bound parameters
        result = ProbeResult(name, ERROR, f"The {name} probe failed: {type(exc).__name__}: {first_line}")
    return ProbeResult(result.name, result.status, result.message, result.details,
                       round((time.perf_counter() - started) * 1000, 1))


def check_database(session: Session) -> ProbeResult:
    """``SELECT 1`` round trip and its latency."""

    def probe() -> ProbeResult:
        session.execute(text("SELECT 1"))
        dialect = session.get_bind().dialect.name
        return ProbeResult("database", OK, f"The {dialect} database answers.", {"dialect": dialect})

    return _timed("database", probe, session)


def check_broker(ping: Callable[[], None] | None, *, kind: str) -> ProbeResult:
    """Ask the broker to answer (``ping`` raises if it cannot); the in-process broker needs no ping."""

    def probe() -> ProbeResult:
        if ping is None:
            return ProbeResult("broker", OK, f"The {kind} broker runs inside the process.", {"kind": kind})
        try:
            ping()
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
            return ProbeResult("broker", ERROR, f"The {kind} broker does not answer: {type(exc).__name__}: {exc}",
                               {"kind": kind})
        return ProbeResult("broker", OK, f"The {kind} broker answers.", {"kind": kind})

    return _timed("broker", probe)


def _open_rows(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(TaskItem).join(BackgroundTask, BackgroundTask.id == TaskItem.task_id)
        .where(BackgroundTask.status.in_(TaskStatus.ACTIVE), TaskItem.status.in_(ItemStatus.OPEN))
    ) or 0


def check_workers(session: Session, *, now: datetime, timeout: float, recent: float = 600.0) -> ProbeResult:
    """Live Dramatiq workers by heartbeat; an error when work is waiting and none is alive, a warning for
    workers lost within the last ``recent`` seconds (older losses are history, shown by the status)."""

    def probe() -> ProbeResult:
        workers = [p for p in describe(session, now=now, timeout=timeout) if ProcessRole.WORKER in p["roles"]]
        alive = [w["id"] for w in workers if w["state"] in ("alive", "stopping")]
        lost = [w["id"] for w in workers if w["state"] == "lost" and w["seconds_since_heartbeat"] <= recent]
        details = {"alive": alive, "lost": lost, "open_rows": _open_rows(session)}
        if alive:
            note = f"; {len(lost)} stopped answering recently" if lost else ""
            return ProbeResult("workers", WARNING if lost else OK, f"{len(alive)} worker(s) alive{note}.", details)
        if details["open_rows"]:
            return ProbeResult("workers", ERROR, f"No worker is alive and {details['open_rows']} rows are waiting.",
                               details)
        return ProbeResult("workers", WARNING, "No worker is alive; new work will wait until one starts.", details)

    return _timed("workers", probe, session)


def check_scheduler(session: Session, *, now: datetime, timeout: float,
                    where: str = "the clock process") -> ProbeResult:
    """A process running the scheduler (APScheduler) has beaten within the heartbeat timeout."""

    def probe() -> ProbeResult:
        clocks = [p for p in describe(session, now=now, timeout=timeout) if ProcessRole.SCHEDULER in p["roles"]]
        alive = [c["id"] for c in clocks if c["state"] in ("alive", "stopping")]
        details = {"alive": alive}
        if not alive:
            return ProbeResult("scheduler", ERROR, "No scheduler is running: health probes and recovery will not "
                               f"run on their own (start {where}).", details)
        return ProbeResult("scheduler", OK, f"{len(alive)} scheduler process(es) alive.", details)

    return _timed("scheduler", probe, session)


def _outbox_model() -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """The outbox model and its waiting / failed statuses (None when this version has no outbox)."""
    try:
        from scholarise.models.email import EmailNotification, NotificationStatus
    except ImportError:
        return None, (), ()
    return EmailNotification, tuple(NotificationStatus.OPEN), (NotificationStatus.FAILED,)


def check_outbox(session: Session, *, now: datetime) -> ProbeResult:
    """Emails waiting to be delivered, and for how long; failed deliveries are a warning."""

    def probe() -> ProbeResult:
        model, waiting_states, failed_states = _outbox_model()
        if model is None:
            return ProbeResult("outbox", OK, "No mail outbox is configured in this version.", {"available": False})
        counts = dict(session.execute(select(model.status, func.count()).group_by(model.status)).all())
        waiting = sum(counts.get(s, 0) for s in waiting_states)
        failed = sum(counts.get(s, 0) for s in failed_states)
        oldest = session.scalar(select(func.min(model.created_at)).where(model.status.in_(waiting_states)))
        age = (now - (oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo))).total_seconds() if oldest else 0
        details = {"available": True, "counts": {str(k): v for k, v in counts.items()}, "waiting": waiting,
                   "failed": failed, "oldest_waiting_seconds": round(age)}
        if waiting and age > OUTBOX_WARN_AFTER.total_seconds():
            return ProbeResult("outbox", WARNING, f"{waiting} email(s) waiting, the oldest for {age / 60:.0f} min.",
                               details)
        if failed:
            return ProbeResult("outbox", WARNING, f"{failed} email(s) could not be delivered.", details)
        return ProbeResult("outbox", OK, f"{waiting} email(s) waiting.", details)

    return _timed("outbox", probe, session)


def check_stuck_tasks(session: Session, *, now: datetime, stalled_after: float) -> ProbeResult:
    """Active tasks with no sign of life (progress, heartbeat, start) for ``stalled_after`` seconds."""

    def probe() -> ProbeResult:
        cutoff = now - timedelta(seconds=stalled_after)
        last = func.coalesce(BackgroundTask.heartbeat_at, BackgroundTask.progress_at, BackgroundTask.started_at,
                             BackgroundTask.created_at)
        stuck = list(session.scalars(select(BackgroundTask.id).where(BackgroundTask.status.in_(TaskStatus.ACTIVE),
                                                                     last < cutoff).order_by(BackgroundTask.id)))
        if stuck:
            return ProbeResult("stuck_tasks", WARNING, f"{len(stuck)} active task(s) show no progress for more than "
                               f"{stalled_after:g} s: {', '.join(f'#{t}' for t in stuck[:10])}.", {"tasks": stuck})
        return ProbeResult("stuck_tasks", OK, "No task is stuck.", {"tasks": []})

    return _timed("stuck_tasks", probe, session)


def run_probes(session: Session, settings: Settings, *, broker_ping: Callable[[], None] | None,
               stalled_after: float, now: datetime | None = None) -> list[ProbeResult]:
    """Every probe, in a fixed order; a failing database makes the later probes report their own errors."""
    now = now or utcnow()
    results = [check_database(session), check_broker(broker_ping, kind=settings.broker)]
    if results[0].status == ERROR:
        session.rollback()
    results += [
        check_workers(session, now=now, timeout=settings.heartbeat_timeout),
        check_scheduler(session, now=now, timeout=settings.heartbeat_timeout,
                        where="the clock process" if settings.broker == "redis" else "the web process"),
        check_outbox(session, now=now),
        check_stuck_tasks(session, now=now, stalled_after=stalled_after),
    ]
    return results


# --- runs: the per-interval lock, storing, reading, retention -------------------------------------


def slot_for(timestamp: float, interval: float) -> int:
    """The interval a scheduled run belongs to; rounding absorbs a clock firing a little early or late."""
    return round(timestamp / interval)


def claim_run(session: Session, *, slot: int | None, trigger: str, worker_id: str | None) -> int | None:
    """Insert the run row; None when another run already owns ``slot`` (the unique slot is the lock)."""
    run = HealthRun(slot=slot, trigger=trigger, worker_id=worker_id, started_at=utcnow())
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        return None
    return run.id


def finish_run(session: Session, run_id: int, results: list[ProbeResult], *, extra: ProbeResult | None = None) -> str:
    """Store the results of a run and its overall (worst) status, which it returns."""
    run = session.get(HealthRun, run_id)
    if run is None:  # pruned meanwhile: nothing sensible to attach the results to
        return CheckStatus.worst([r.status for r in results])
    now = utcnow()
    everything = results + ([extra] if extra else [])
    for r in everything:
        session.add(HealthCheck(run_id=run_id, name=r.name, status=r.status, message=r.message,
                                details=r.details, duration_ms=r.duration_ms, checked_at=now))
    run.finished_at = now
    run.status = CheckStatus.worst([r.status for r in everything])
    session.flush()
    return run.status


def prune(session: Session, *, now: datetime | None = None, retention_days: float) -> int:
    """Delete runs (and their checks) and heartbeats older than the retention window; returns runs deleted."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    old = select(HealthRun.id).where(HealthRun.started_at < cutoff)
    session.execute(delete(HealthCheck).where(HealthCheck.run_id.in_(old)))
    result = session.execute(delete(HealthRun).where(HealthRun.started_at < cutoff))
    prune_heartbeats(session, older_than=cutoff)
    return result.rowcount or 0


def _run_dict(run: HealthRun, checks: list[HealthCheck] | None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "run_id": run.id, "trigger": run.trigger, "worker_id": run.worker_id, "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if checks is not None:
        answer["checks"] = [{"name": c.name, "status": c.status, "message": c.message, "details": c.details,
                             "duration_ms": c.duration_ms, "checked_at": c.checked_at.isoformat()} for c in checks]
    return answer


def recent_runs(session: Session, *, limit: int = 10) -> list[dict[str, Any]]:
    """The newest runs first; the first one carries its checks."""
    runs = list(session.scalars(select(HealthRun).order_by(HealthRun.started_at.desc(), HealthRun.id.desc())
                                .limit(limit)))
    return [_run_dict(run, list(run.checks) if i == 0 else None) for i, run in enumerate(runs)]


def scheduler_summary(session: Session, settings: Settings, *, now: datetime) -> dict[str, Any]:
    """Which clocks are alive, when the last scheduled run happened and when the next one is due."""
    clocks = [p for p in describe(session, now=now, timeout=settings.heartbeat_timeout)
              if ProcessRole.SCHEDULER in p["roles"]]
    last = session.scalar(select(func.max(HealthRun.started_at)).where(HealthRun.trigger == "schedule"))
    interval = settings.health_interval
    next_due = (math.floor(now.timestamp() / interval) + 1) * interval
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    return {
        "alive": any(c["state"] in ("alive", "stopping") for c in clocks),
        "processes": clocks,
        "interval_seconds": interval,
        "last_scheduled_run": last.isoformat() if last else None,
        "next_run_due": datetime.fromtimestamp(next_due, tz=now.tzinfo).isoformat(),
        "overdue": bool(last is not None and (now - last).total_seconds() > 2 * interval + 5),
    }
