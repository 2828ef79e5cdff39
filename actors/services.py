"""Start, inspect and restart the background services of this process; what the dashboard, the JSON API
(``/api/init``) and the ``scholarise status|restart`` commands call.

What "the services" are depends on the mode (``settings.broker``):

* ``embedded`` — this process runs Dramatiq worker threads, and exactly one process per deployment
  (whoever holds the instance folder's scheduler lock) runs the APScheduler clock.
* ``redis`` (distributed) — workers and the clock are separate processes (Procfile); the web
  process only configures the broker, says it is alive, and asks for a recovery pass at start.
* ``stub`` — tests drive the workers themselves: nothing is started.

Every function returns a plain JSON-serialisable ``dict``; none raises for a service that is down
(that is reported in the answer). All state is per process and reset after a fork.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actors import heartbeat, runtime
from scholarise import health as health_service
from scholarise import heartbeats as heartbeat_service
from scholarise import recovery as recovery_service
from scholarise.config import Settings
from scholarise.db import session_scope
from scholarise.models import ProcessRole, utcnow

logger = logging.getLogger(__name__)


@dataclass
class _ProcessServices:
    pid: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    settings: Settings | None = None
    initialized_at: datetime | None = None
    initializations: int = 0
    worker: Any = None  # dramatiq.Worker of the embedded mode
    clock: Any = None  # actors.clock.EmbeddedClock when this process holds the scheduler lock


_state = _ProcessServices(os.getpid())


def _local() -> _ProcessServices:
    global _state
    if _state.pid != os.getpid():  # forked (gunicorn pre-fork, multiprocessing): nothing runs here yet
        _state = _ProcessServices(os.getpid())
    return _state


def mode_of(settings: Settings) -> str:
    """``embedded``, ``distributed`` or ``stub``: how this deployment runs its services."""
    return {"redis": "distributed"}.get(settings.broker, settings.broker)


def _settings(explicit: Settings | None) -> Settings:
    if explicit is not None:
        return explicit
    local = _local()
    if local.settings is not None:
        return local.settings
    try:
        return runtime.current().settings
    except RuntimeError:
        return Settings.from_env()


def _ensure_runtime(settings: Settings) -> runtime.Runtime:
    """The configured runtime, configuring the actors for ``settings`` if this process has not yet.

    A runtime already configured for the same database and broker is kept, so that reading the
    status never rebuilds the broker under running worker threads.
    """
    try:
        current = runtime.current()
    except RuntimeError:
        current = None
    same = current is not None and (current.settings.database_url, current.settings.broker,
                                    current.settings.redis_url) == (settings.database_url, settings.broker,
                                                                    settings.redis_url)
    if not same:
        from actors.broker import configure

        configure(settings)
    return runtime.current()


def initialize(force: bool = False, *, settings: Settings | None = None) -> dict[str, Any]:
    """Start what this process should run, once; calling it again is a no-op unless ``force``.

    Args:
        force: stop what this process runs and start it again (what a restart does).
        settings: the settings to run with (default: those already in use, else the environment).

    Returns:
        ``{"initialized": True, "already_initialized": bool, "started": [...], "stopped": [...],
        "mode", "process", "pid", "since", "scheduler": bool, "embedded_worker": bool}``.

    Raises:
        scholarise.errors.ConfigError: the environment's settings are malformed (only when no
            settings are given and none are in use yet).
    """
    local = _local()
    with local.lock:
        stopped: list[str] = []
        if local.initialized_at is not None and not force:
            return {**_describe(local), "already_initialized": True, "started": [], "stopped": []}
        if local.initialized_at is not None:
            stopped = _stop_local(local)
        settings = _settings(settings)
        local.settings = settings
        _ensure_runtime(settings)
        started = _start_local(local, settings)
        local.initialized_at = utcnow()
        local.initializations += 1
        logger.info("Services initialised in process %s (mode %s): started %s", os.getpid(), mode_of(settings),
                    ", ".join(started) or "nothing")
        return {**_describe(local), "already_initialized": False, "started": started, "stopped": stopped}


def _start_local(local: _ProcessServices, settings: Settings) -> list[str]:
    mode = mode_of(settings)
    if mode == "stub":
        return []
    beat = heartbeat.current()
    beat.add_role(ProcessRole.WEB)
    beat.start(settings)
    started = ["heartbeat"]
    if mode == "embedded":
        from actors.clock import EmbeddedClock
        from actors.embedded import start_worker

        if local.worker is None:
            local.worker = start_worker()  # its middleware adds the worker role; it recovers local claims
            started.append("worker")
        local.clock = EmbeddedClock(settings)
        if local.clock.try_start():
            started.append("scheduler")
        else:
            started.append("scheduler-standby")  # another process holds the lock; we retry on every beat
    else:
        from actors.health import recover_work

        try:
            recover_work.send()
            started.append("recovery-requested")
        except Exception as exc:  # noqa: BLE001 - the broker may be down at start; the clock asks again
            logger.warning("could not request a recovery pass at start: %s", exc)
    return started


def _stop_local(local: _ProcessServices) -> list[str]:
    stopped = []
    if local.clock is not None:
        if local.clock.stop():
            stopped.append("scheduler")
        local.clock = None
    if local.worker is not None:
        local.worker.stop(timeout=30_000)
        local.worker = None
        stopped.append("worker")
    local.initialized_at = None
    return stopped


def adopt_worker(worker: Any) -> None:
    """Take charge of an embedded worker started earlier (``scholarise demo``) instead of starting another."""
    local = _local()
    with local.lock:
        local.worker = worker


def shutdown() -> dict[str, Any]:
    """Stop what this process runs and mark its heartbeat stopped (a clean exit, e.g. gunicorn's worker_exit)."""
    local = _local()
    with local.lock:
        stopped = _stop_local(local)
        heartbeat.current().stop()
        return {"stopped": stopped, "pid": os.getpid()}


def _describe(local: _ProcessServices) -> dict[str, Any]:
    settings = local.settings
    return {
        "initialized": local.initialized_at is not None,
        "mode": mode_of(settings) if settings else None,
        "process": heartbeat.current().worker_id,
        "pid": os.getpid(),
        "since": local.initialized_at.isoformat() if local.initialized_at else None,
        "initializations": local.initializations,
        "scheduler": bool(local.clock is not None and local.clock.running),
        "embedded_worker": local.worker is not None,
    }


def get_service_status(*, settings: Settings | None = None) -> dict[str, Any]:
    """What runs across the deployment and how healthy it is; starts nothing.

    Returns:
        ``{"checked_at", "mode", "this_process": {...}, "database": {...}, "broker": {...},
        "workers": [...], "scheduler": {...}, "last_probe": {...} | None, "recent_probes": [...],
        "outbox": {...}, "tasks": {...}}``. Workers list every process seen within the retention
        window with ``state`` alive / stopping / stopped / lost (no heartbeat for
        ``heartbeat_timeout`` seconds).
    """
    settings = _settings(settings)
    rt = _ensure_runtime(settings)
    now = utcnow()
    from actors.health import broker_ping

    broker = health_service.check_broker(broker_ping(settings), kind=settings.broker)
    answer: dict[str, Any] = {
        "checked_at": now.isoformat(),
        "mode": mode_of(settings),
        "this_process": _describe(_local()),
        "broker": {"kind": settings.broker, **broker.to_dict()},
        "health_interval": settings.health_interval,
        "heartbeat_timeout": settings.heartbeat_timeout,
    }
    with session_scope(rt.session_factory) as session:
        answer["database"] = health_service.check_database(session).to_dict()
        timeout = settings.heartbeat_timeout
        processes = _section(session, "processes", [],
                             lambda: heartbeat_service.describe(session, now=now, timeout=timeout))
        answer["workers"] = [p for p in processes if ProcessRole.WORKER in p["roles"]]
        answer["processes"] = processes
        answer["scheduler"] = _section(session, "scheduler", {},
                                       lambda: health_service.scheduler_summary(session, settings, now=now))
        runs = _section(session, "probes", [], lambda: health_service.recent_runs(session, limit=10))
        answer["last_probe"] = runs[0] if runs else None
        answer["recent_probes"] = [{k: v for k, v in r.items() if k != "checks"} for r in runs]
        answer["outbox"] = health_service.check_outbox(session, now=now).to_dict()
        answer["tasks"] = _section(session, "tasks", {}, lambda: recovery_service.work_summary(session))
    return answer


def _section(session: Any, name: str, empty: Any, read: Any) -> Any:
    """One part of the status; a part that cannot be read is logged and left empty (a savepoint keeps
    the session usable for the next part, also on PostgreSQL)."""
    try:
        with session.begin_nested():
            return read()
    except Exception as exc:  # noqa: BLE001 - a status page must answer even when a table is missing
        logger.warning("service status: %s could not be read: %s", name, (str(exc).splitlines() or [""])[0])
        return empty


def restart_services(*, settings: Settings | None = None) -> dict[str, Any]:
    """Re-initialise what runs in this process and trigger recovery across the cluster.

    Recovery runs here and now (it works on the shared database, so it covers every machine):
    rows held by workers whose heartbeat is stale go back to pending and the affected tasks are
    rung again. A health probe run is queued so the dashboard shows fresh results.

    Returns:
        ``{"restarted": bool, "initialize": {...} | None, "recovery": {...}, "probe_requested": bool}``
        — ``restarted`` is False for a process that had nothing running (e.g. the CLI).
    """
    local = _local()
    settings = _settings(settings)
    init = initialize(force=True, settings=settings) if local.initialized_at is not None else None
    _ensure_runtime(settings)
    from actors.health import probe_once, recover_now, run_health_probe

    report = recover_now(settings)
    probe = False
    try:
        if settings.broker == "redis" or local.worker is not None:
            run_health_probe.send(None, "restart")
        else:  # an in-process broker with no worker here (the CLI): a queued message would die with us
            probe_once(settings, slot=None, trigger="restart")
        probe = True
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: recovery already ran
        logger.warning("could not run a health probe after the restart: %s", exc)
    return {"restarted": init is not None, "initialize": init, "recovery": report, "probe_requested": probe}
