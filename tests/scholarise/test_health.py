"""Health probes report what is wrong without raising; runs are one per slot, stored, read back and pruned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from scholarise import health, heartbeats, tasks
from scholarise.config import Settings
from scholarise.models import BackgroundTask, HealthCheck, HealthRun, WorkerHeartbeat, utcnow


def register(session, worker_id: str, roles: list[str], *, ago: float = 0.0) -> None:
    host, _, pid = worker_id.rpartition(":")
    now = utcnow() - timedelta(seconds=ago)
    heartbeats.beat(session, heartbeats.Identity(host, int(pid), now), roles=roles, queues=["imports"], now=now)


def submit(session, n: int = 5) -> int:
    items = [{"first_name": f"P{i}", "last_name": "T", "email": f"p{i}@example.org"} for i in range(n)]
    return tasks.create_bulk_task(session, "BULK_USER_CREATION", "Import", "",
                                  {"type": "teacher", "branch": "Main", "items": items}).id


def by_name(results: list[health.ProbeResult]) -> dict[str, health.ProbeResult]:
    return {r.name: r for r in results}


def test_a_quiet_embedded_deployment_reports_what_is_missing(session, settings: Settings):
    results = by_name(health.run_probes(session, settings, broker_ping=None, stalled_after=60))
    assert list(results) == list(health.PROBE_NAMES)
    assert (results["database"].status, results["broker"].status) == ("ok", "ok")
    assert results["workers"].status == "warning"
    assert results["scheduler"].status == "error" and "the web process" in results["scheduler"].message
    assert results["stuck_tasks"].status == "ok"


def test_an_unreachable_broker_is_an_error_with_the_reason(session):
    def ping() -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    result = health.check_broker(ping, kind="redis")
    assert result.status == "error" and "Connection refused" in result.message


def test_waiting_rows_without_a_live_worker_are_an_error_and_a_live_worker_clears_it(session):
    submit(session)
    register(session, "h:1", ["worker"], ago=120)
    result = health.check_workers(session, now=utcnow(), timeout=30)
    assert result.status == "error" and result.details["lost"] == ["h:1"]
    register(session, "h:2", ["worker"])
    result = health.check_workers(session, now=utcnow(), timeout=30)
    assert (result.status, result.details["alive"]) == ("warning", ["h:2"])  # one lost, one alive


def test_a_live_clock_satisfies_the_scheduler_probe(session):
    register(session, "clock:9", ["scheduler"])
    assert health.check_scheduler(session, now=utcnow(), timeout=30).status == "ok"


def test_a_task_without_progress_is_reported_stuck(session):
    task_id = submit(session)
    session.execute(update(BackgroundTask).values(created_at=utcnow() - timedelta(minutes=10)))
    result = health.check_stuck_tasks(session, now=utcnow(), stalled_after=60)
    assert (result.status, result.details["tasks"]) == ("warning", [task_id])


def test_the_outbox_probe_warns_about_old_waiting_and_failed_emails(session):
    email = pytest.importorskip("scholarise.models.email")
    assert health.check_outbox(session, now=utcnow()).status == "ok"
    session.add(email.EmailNotification(kind="task_completed", subject="s", body_text="t", body_html="h",
                                        recipients=["a@example.org"], created_at=utcnow() - timedelta(hours=1)))
    session.flush()
    result = health.check_outbox(session, now=utcnow())
    assert (result.status, result.details["waiting"]) == ("warning", 1)


def test_a_failing_probe_becomes_an_error_result_and_leaves_the_session_usable(session):
    def broken() -> health.ProbeResult:
        session.execute(select(func.count()).select_from(HealthRun).where(HealthRun.id == "not a number"))
        raise RuntimeError("boom\nSELECT secret FROM somewhere")

    result = health._timed("custom", broken, session)
    assert result.status == "error" and "boom" in result.message and "SELECT" not in result.message
    assert health.check_database(session).status == "ok"


def test_only_the_first_run_claims_a_slot_while_on_demand_runs_always_may(session):
    assert health.claim_run(session, slot=42, trigger="schedule", worker_id="a:1") is not None
    assert health.claim_run(session, slot=42, trigger="schedule", worker_id="b:2") is None
    assert health.claim_run(session, slot=None, trigger="manual", worker_id="b:2") is not None
    assert health.claim_run(session, slot=None, trigger="manual", worker_id="b:2") is not None
    assert session.scalar(select(func.count()).select_from(HealthRun)) == 3


def test_slots_absorb_clocks_firing_a_little_early_or_late():
    assert health.slot_for(1_000 * 300 - 2, 300) == health.slot_for(1_000 * 300 + 3, 300) == 1_000
    assert health.slot_for(1_001 * 300 + 1, 300) == 1_001


def test_a_finished_run_stores_its_checks_and_worst_status_newest_first(session, settings):
    first = health.claim_run(session, slot=1, trigger="schedule", worker_id="a:1")
    health.finish_run(session, first, [health.ProbeResult("database", "ok", "fine")])
    second = health.claim_run(session, slot=2, trigger="schedule", worker_id="a:1")
    status = health.finish_run(session, second, [health.ProbeResult("database", "ok", "fine"),
                                                 health.ProbeResult("workers", "error", "none")],
                               extra=health.ProbeResult("recovery", "warning", "did things"))
    assert status == "error"
    runs = health.recent_runs(session, limit=5)
    assert [r["run_id"] for r in runs] == [second, first]
    assert [c["name"] for c in runs[0]["checks"]] == ["database", "workers", "recovery"]
    assert "checks" not in runs[1]


def test_retention_prunes_old_runs_their_checks_and_forgotten_processes(session):
    old = health.claim_run(session, slot=1, trigger="schedule", worker_id="a:1")
    health.finish_run(session, old, [health.ProbeResult("database", "ok", "fine")])
    session.execute(update(HealthRun).where(HealthRun.id == old).values(started_at=utcnow() - timedelta(days=8)))
    register(session, "gone:1", ["worker"], ago=9 * 86_400)
    register(session, "here:2", ["worker"])
    fresh = health.claim_run(session, slot=2, trigger="schedule", worker_id="a:1")
    assert health.prune(session, retention_days=7) == 1
    assert session.scalars(select(HealthRun.id)).all() == [fresh]
    assert session.scalar(select(func.count()).select_from(HealthCheck)) == 0
    assert session.scalars(select(WorkerHeartbeat.id)).all() == ["here:2"]


def test_process_states_read_alive_stopping_lost_and_stopped(session):
    register(session, "h:1", ["worker"])
    register(session, "h:2", ["worker"], ago=100)
    register(session, "h:3", ["worker"])
    register(session, "h:4", ["worker"])
    heartbeats.beat(session, heartbeats.Identity("h", 3, utcnow()), roles=["worker"], stopping=True)
    heartbeats.mark_stopped(session, "h:4")
    states = {p["id"]: p["state"] for p in heartbeats.describe(session, timeout=30)}
    assert states == {"h:1": "alive", "h:2": "lost", "h:3": "stopping", "h:4": "stopped"}
    assert heartbeats.live_ids(session, timeout=30) == {"h:1", "h:3"}


def test_a_heartbeat_shows_the_batch_its_worker_holds(session):
    from scholarise import claims

    task_id = submit(session, 15)
    claims.claim_batch(session, worker_id="h:7", batch_size=10, lease_seconds=300)
    register(session, "h:7", ["worker"])
    row = session.get(WorkerHeartbeat, "h:7")
    assert (row.current_task_id, row.current_batch) == (task_id, f"#{task_id} rows 1-10")


def test_only_live_processes_are_shown_working_on_a_batch(session):
    from scholarise import claims

    task_id = submit(session, 15)
    claims.claim_batch(session, worker_id="h:8", batch_size=10, lease_seconds=300)
    register(session, "h:8", ["worker"])
    [alive] = heartbeats.describe(session, timeout=30)
    assert (alive["state"], alive["current_task_id"]) == ("alive", task_id)
    later = utcnow() + timedelta(seconds=60)  # silent past the timeout: lost, and recovery hands its rows back
    [lost] = heartbeats.describe(session, timeout=30, now=later)
    assert (lost["state"], lost["current_task_id"], lost["current_batch"]) == ("lost", None, None)
    assert heartbeats.live_worker_count(session, timeout=30) == 1
    assert heartbeats.live_worker_count(session, timeout=30, now=later) == 0
