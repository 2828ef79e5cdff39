"""Maintenance actors: the periodic health probe run and the recovery pass (queue ``maintenance``).

The clock enqueues them; any worker runs them. However many clocks enqueue a scheduled probe for
the same interval, exactly one run happens: in Redis mode a ``SET NX PX`` key turns the extra
messages away cheaply, and the unique ``health_runs.slot`` row is the lock that holds in every
mode (and after a Redis restart forgets the key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq

from actors import runtime
from actors.broker import actor
from actors.imports import ring
from scholarise import health, recovery
from scholarise.config import Settings
from scholarise.db import session_scope

logger = logging.getLogger(__name__)


@actor(actor_name="run_health_probe", queue_name="maintenance", max_retries=0, time_limit=120_000)
def run_health_probe(slot: int | None = None, trigger: str = "schedule") -> None:
    """Run every probe once for the interval ``slot`` (None: on demand), store the results, repair what it can."""
    settings = runtime.current().settings
    if slot is not None and not _first_for_slot(settings, slot):
        return
    probe_once(settings, slot=slot, trigger=trigger)


@actor(actor_name="recover_work", queue_name="maintenance", max_retries=3, min_backoff=1_000, time_limit=60_000)
def recover_work() -> None:
    """Hand back rows held by lost workers and ring for stalled work (idempotent; see scholarise.recovery)."""
    recover_now(runtime.current().settings)


OUTBOX_OVERDUE_SECONDS = 120


def recover_now(settings: Settings) -> dict[str, Any]:
    """One recovery pass, committed, then the doorbells; returns the report as a dict."""
    with session_scope(runtime.current().session_factory) as session:
        report = recovery.recover(session, heartbeat_timeout=settings.heartbeat_timeout)
    for task_id in report.ring:
        ring(task_id, settings.worker_threads)
    if report.changed:
        logger.warning("recovery: released %d rows of lost workers %s; rang tasks %s", report.released_rows,
                       report.lost_workers + report.reused_ids, report.ring)
    # An email whose message was lost (broker restart, crash between commit and enqueue) is due again.
    from actors.notifications import enqueue_due

    return {**report.to_dict(), "emails_requeued": enqueue_due(OUTBOX_OVERDUE_SECONDS)}


def probe_once(settings: Settings, *, slot: int | None, trigger: str) -> int | None:
    """Claim the run (None if another run owns ``slot``), recover, probe, store, prune; returns the run id."""
    rt = runtime.current()
    with session_scope(rt.session_factory) as session:
        run_id = health.claim_run(session, slot=slot, trigger=trigger, worker_id=runtime.worker_identity())
    if run_id is None:
        logger.info("health probe for slot %s already ran elsewhere", slot)
        return None
    repaired = _recovery_result(settings)
    with session_scope(rt.session_factory) as session:
        results = health.run_probes(session, settings, broker_ping=broker_ping(settings),
                                    stalled_after=recovery.stalled_after_default(settings.heartbeat_timeout))
    with session_scope(rt.session_factory) as session:
        status = health.finish_run(session, run_id, results, extra=repaired)
        health.prune(session, retention_days=settings.health_retention_days)
    logger.log(logging.INFO if status == "ok" else logging.WARNING, "health probe run %s (%s): %s", run_id, trigger,
               status)
    return run_id


def _recovery_result(settings: Settings) -> health.ProbeResult:
    try:
        report = recover_now(settings)
    except Exception as exc:  # noqa: BLE001 - reported as the probe's finding
        return health.ProbeResult("recovery", "error", f"The recovery pass failed: {type(exc).__name__}: {exc}")
    if not report["released_rows"] and not report["ring"]:
        return health.ProbeResult("recovery", "ok", "Nothing needed recovering.", report)
    parts = []
    if report["released_rows"]:
        parts.append(f"handed back {report['released_rows']} rows held by "
                     f"{', '.join(report['lost_workers'] + report['reused_ids'])}")
    if report["ring"]:
        parts.append("re-queued task(s) " + ", ".join(f"#{t}" for t in report["ring"]))
    return health.ProbeResult("recovery", "warning", "Recovered: " + "; ".join(parts) + ".", report)


def broker_ping(settings: Settings) -> Callable[[], None] | None:
    """A callable that raises when the Redis broker does not answer within 2 s (None for in-process brokers)."""
    if settings.broker != "redis" or not settings.redis_url:
        return None
    url = settings.redis_url

    def ping() -> None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()

    return ping


def _first_for_slot(settings: Settings, slot: int) -> bool:
    """Redis ``SET NX PX``: the first message for a slot wins; the database slot decides if Redis cannot."""
    if settings.broker != "redis":
        return True
    client = getattr(dramatiq.get_broker(), "client", None)
    if client is None:
        return True
    try:
        won = client.set(f"scholarise:health-probe:{slot}", runtime.worker_identity(), nx=True,
                         px=int(settings.health_interval * 2000))
    except Exception as exc:  # noqa: BLE001 - fall back to the database lock
        logger.info("redis probe lock unavailable (%s); the database slot decides", exc)
        return True
    return bool(won)
