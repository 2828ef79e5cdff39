"""The service functions behind /api/init, the dashboard and the CLI; startup once per process; the clock's jobs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from actors import clock, heartbeat, runtime, services, startup
from scholarise.config import Settings
from scholarise.errors import ConfigError

STATUS_KEYS = {"checked_at", "mode", "this_process", "broker", "database", "health_interval", "heartbeat_timeout",
               "workers", "processes", "scheduler", "last_probe", "recent_probes", "outbox", "tasks"}


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(services, "_state", services._ProcessServices(os.getpid()))
    monkeypatch.setattr(heartbeat, "_current", None)
    monkeypatch.setattr(startup, "_scheduled", {})
    monkeypatch.setattr(startup, "_results", {})
    yield
    services.shutdown()
    runtime.set_runtime(None)


@pytest.fixture
def embedded(migrated: Settings) -> Settings:
    return migrated.replace(broker="embedded", heartbeat_interval=0.1, heartbeat_timeout=1.0)


def test_the_stub_mode_starts_nothing_and_a_second_initialise_is_a_no_op(migrated):
    first = services.initialize(settings=migrated)
    assert (first["initialized"], first["mode"], first["started"], first["already_initialized"]) == (
        True, "stub", [], False)
    second = services.initialize(settings=migrated)
    assert second["already_initialized"] and second["initializations"] == 1


def test_the_embedded_mode_starts_worker_threads_and_the_one_scheduler(embedded):
    result = services.initialize(settings=embedded)
    assert set(result["started"]) == {"heartbeat", "worker", "scheduler"}
    assert result["scheduler"] and result["embedded_worker"]
    status = services.get_service_status(settings=embedded)
    assert STATUS_KEYS <= set(status)
    me = status["this_process"]["process"]
    assert [p["roles"] for p in status["processes"] if p["id"] == me] == [["scheduler", "web", "worker"]]
    assert status["scheduler"]["alive"] and status["workers"][0]["state"] == "alive"


def test_a_second_process_waits_for_the_scheduler_lock_and_takes_over_when_it_is_free(embedded):
    holder = clock.SchedulerLock(embedded)
    assert holder.acquire()  # another web process of the same deployment
    result = services.initialize(settings=embedded)
    assert "scheduler-standby" in result["started"] and not result["scheduler"]
    holder.release()
    deadline = time.monotonic() + 5
    while not services._describe(services._local())["scheduler"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services._describe(services._local())["scheduler"]


def test_restart_stops_and_starts_this_process_and_runs_recovery(embedded):
    services.initialize(settings=embedded)
    result = services.restart_services(settings=embedded)
    assert result["restarted"] and result["probe_requested"]
    assert set(result["initialize"]["stopped"]) == {"scheduler", "worker"}
    assert {"worker", "scheduler"} <= set(result["initialize"]["started"])
    assert result["initialize"]["initializations"] == 2
    assert set(result["recovery"]) >= {"released_rows", "lost_workers", "ring"}


def test_restart_in_a_process_that_runs_nothing_only_recovers_and_probes(migrated):
    result = services.restart_services(settings=migrated)
    assert (result["restarted"], result["initialize"]) == (False, None)
    status = services.get_service_status(settings=migrated)
    assert status["last_probe"]["trigger"] == "restart"


def test_status_answers_even_when_the_tables_cannot_be_read(settings):
    status = services.get_service_status(settings=settings)  # never migrated: no tables
    assert status["database"]["status"] == "ok"  # SELECT 1 works...
    assert (status["processes"], status["last_probe"]) == ([], None)  # ...the rest is empty, not an exception
    assert status["outbox"]["status"] == "error"


def test_startup_runs_once_per_process_after_its_delay(migrated):
    assert startup.schedule_startup(migrated, delay=0.05)
    assert not startup.schedule_startup(migrated, delay=0.05)
    result = startup.wait_for_startup(5)
    assert result is not None and result["initialized"] and result["initializations"] == 1


def test_a_process_that_does_not_serve_skips_the_startup(migrated):
    startup.schedule_startup(migrated, delay=0, should_start=lambda: False)
    assert startup.startup_result() == {"initialized": False, "skipped": True}
    assert not services._describe(services._local())["initialized"]


def test_the_clock_jobs_coalesce_run_alone_and_fire_on_shared_instants(migrated):
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = migrated.replace(health_interval=300.0)
    scheduler = clock.add_jobs(BackgroundScheduler(timezone="UTC"), settings)
    scheduler.start(paused=True)
    try:
        probe = scheduler.get_job("health-probe")
        assert (probe.coalesce, probe.max_instances, probe.misfire_grace_time) == (True, 1, 150)
        assert probe.next_run_time.timestamp() % 300 == 0
        assert scheduler.get_job("recover-work").trigger.interval.total_seconds() == settings.heartbeat_timeout
        startup_in = scheduler.get_job("startup-probe").next_run_time.timestamp() - time.time()
        assert 0 < startup_in <= clock.STARTUP_PROBE_DELAY  # one probe soon after a start, not five minutes later
    finally:
        scheduler.shutdown(wait=False)


def test_the_startup_job_enqueues_an_on_demand_probe(broker):
    import dramatiq

    clock.enqueue_startup_probe()
    message = dramatiq.Message.decode(broker.queues["maintenance"].get_nowait())
    assert (message.actor_name, message.args) == ("run_health_probe", (None, "startup"))


def test_a_clock_job_enqueues_the_probe_for_the_current_slot(broker):
    import dramatiq

    before = time.time()
    clock.enqueue_probe(300.0)
    message = dramatiq.Message.decode(broker.queues["maintenance"].get_nowait())
    assert message.actor_name == "run_health_probe"
    assert message.args[0] in {round(before / 300), round(time.time() / 300)} and message.args[1] == "schedule"


def test_the_clock_process_refuses_the_embedded_mode_with_a_reason(settings):
    with pytest.raises(ConfigError, match="REDIS_URL"):
        clock.run(settings.replace(broker="embedded"))
