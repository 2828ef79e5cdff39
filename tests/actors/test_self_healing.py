"""Acceptance: real Redis + PostgreSQL, real worker/clock/web processes, the loopback Clerk stand-in.

A killed worker's batch is recovered with no human action; a Redis restart loses nothing; two
clocks still give one probe per interval; web processes initialise once each and the deployment
runs one scheduler; SIGTERM finishes or hands back the batch; status sees a stopped worker.
Heartbeats are every 0.5 s with a 2 s timeout so that all of this takes seconds, not minutes.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

import actors
from actors import runtime
from scholarise.config import Settings
from scholarise.csvfile import open_csv
from scholarise.db import session_scope, upgrade
from scholarise.models import HealthRun, ItemStatus, TaskExecutionLog, TaskItem, TaskStatus, WorkerHeartbeat, utcnow
from tests.support import services
from tests.support.cluster import Cluster, children, free_port, restart_redis, wait_until, write_people_csv
from tests.support.fake_clerk import FakeClerk
from tests.support.workers import ROOT, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]
KEY = "sk_test_self_healing_key"
FAST = {"SCHOLARISE_HEARTBEAT_INTERVAL": "0.5", "SCHOLARISE_HEARTBEAT_TIMEOUT": "2", "SCHOLARISE_HEALTH_INTERVAL": "2",
        "SCHOLARISE_BATCH_LEASE_SECONDS": "600",  # long: the lease must not be what rescues the batch
        "SCHOLARISE_PROVIDER_RATE_LIMIT": "20000", "SCHOLARISE_STARTUP_DELAY": "0.5"}


@dataclass
class Deployment:
    settings: Settings
    cluster: Cluster
    clerk: FakeClerk


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    redis_url = services.require("redis", services.redis_url())
    base = services.require("postgres", services.postgres_url())
    services.flush_redis(redis_url)
    with FakeClerk(KEY, rate_limit=None) as clerk, services.temporary_postgres_database(base) as db_url:
        env = worker_env(REDIS_URL=redis_url, DATABASE_URL=db_url, CLERK_SECRET_KEY=KEY, CLERK_API_URL=clerk.url,
                         SCHOLARISE_INSTANCE_PATH=str(tmp_path / "instance"), SCHOLARISE_WORKER_THREADS="6", **FAST)
        settings = Settings.from_env(env)
        upgrade(settings)
        actors.configure(settings)
        cluster = Cluster(env, tmp_path)
        try:
            yield Deployment(settings, cluster, clerk)
        finally:
            cluster.stop_all()
            runtime.set_runtime(None)
            services.flush_redis(redis_url)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n    [self-healing] {line}", flush=True)


def factory():
    return runtime.current().session_factory


def alive_workers() -> list[str]:
    with session_scope(factory()) as session:
        rows = session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.stopped_at.is_(None)))
        now = utcnow()
        return [r.id for r in rows if "worker" in r.roles and (now - r.last_seen).total_seconds() < 2]


def import_people(tmp_path: Path, n: int, title: str) -> int:
    path = write_people_csv(tmp_path / f"{title}.csv", n)
    with open_csv(path, "teacher", max_bytes=10 * 1024 * 1024, max_rows=100_000) as rows:
        return actors.create_bulk_task("BULK_USER_CREATION", title, "", {"user_type": "teacher", "branch": "Main"},
                                       rows=rows)


def done_rows(task_id: int) -> int:
    with session_scope(factory()) as session:
        return session.scalar(select(func.count()).select_from(TaskItem).where(
            TaskItem.task_id == task_id, TaskItem.status.in_(ItemStatus.DONE))) or 0


def held_rows(worker_id: str | None = None) -> dict[str, list[int]]:
    with session_scope(factory()) as session:
        query = select(TaskItem.claimed_by, TaskItem.id).where(TaskItem.status == ItemStatus.PROCESSING)
        if worker_id:
            query = query.where(TaskItem.claimed_by == worker_id)
        held: dict[str, list[int]] = {}
        for holder, item_id in session.execute(query):
            held.setdefault(holder, []).append(item_id)
        return held


def finished(task_id: int) -> bool:
    return actors.get_task(task_id)["status"] in TaskStatus.FINISHED


def assert_every_row_created_once(task_id: int, clerk: FakeClerk, n: int) -> None:
    summary = actors.get_task(task_id)
    stats = clerk.stats()
    assert (summary["status"], summary["created"], summary["existing"], summary["failed"]) == (
        TaskStatus.COMPLETED, n, 0, 0)
    assert stats["users"] == n
    assert len(stats["created_per_email"]) == n and set(stats["created_per_email"].values()) == {1}


def log_entries(task_id: int, text: str) -> list[TaskExecutionLog]:
    with session_scope(factory()) as session:
        return list(session.scalars(select(TaskExecutionLog).where(
            TaskExecutionLog.task_id == task_id, TaskExecutionLog.message.contains(text))
            .order_by(TaskExecutionLog.id)))


def test_a_sigkilled_workers_batch_is_recovered_with_no_human_action_and_every_row_created_once(
        deployment, tmp_path, capsys):
    d = deployment
    d.clerk.set_delay(0.01)
    for i in range(3):
        d.cluster.worker(f"w{i}")
    d.cluster.clock("clock")
    wait_until(lambda: len(alive_workers()) == 3, timeout=60, what="three live workers")
    task_id = import_people(tmp_path, 2000, "two-thousand")
    wait_until(lambda: done_rows(task_id) >= 300, timeout=60, what="the import to get going")

    victim: list[str] = []

    def a_worker_holds_a_batch() -> bool:
        victim[:] = [h for h in held_rows() if d.cluster.owner_of(int(h.rpartition(":")[2])) is not None]
        return bool(victim)

    wait_until(a_worker_holds_a_batch, timeout=30, interval=0.01, what="a worker holding a batch")
    holder = victim[0]
    os.kill(int(holder.rpartition(":")[2]), signal.SIGKILL)
    killed_at = utcnow()
    orphaned = held_rows(holder).get(holder, [])
    assert orphaned, "the victim finished its batch before the kill landed"
    d.clerk.set_delay(0)  # the rest at full speed: what is measured is the recovery

    wait_until(lambda: finished(task_id), timeout=120, what="the import to finish on its own")
    assert_every_row_created_once(task_id, d.clerk, 2000)
    [recovered] = log_entries(task_id, f"Recovered rows claimed by worker {holder}")
    with session_scope(factory()) as session:
        resumed_at = session.scalar(select(func.max(TaskItem.finished_at)).where(TaskItem.id.in_(orphaned)))
        assert {s for s in session.scalars(select(TaskItem.status).where(TaskItem.id.in_(orphaned)))} == {
            ItemStatus.CREATED}
    released = (recovered.created_at - killed_at).total_seconds()
    redone = (resumed_at - killed_at).total_seconds()
    report(capsys, f"SIGKILL of {holder} holding {len(orphaned)} rows: released after {released:.1f} s, "
                   f"those rows done after {redone:.1f} s (heartbeat timeout 2 s, recovery every 2 s)")
    assert released < 10


def test_a_redis_restart_mid_import_loses_and_duplicates_nothing(deployment, tmp_path, capsys):
    d = deployment
    d.clerk.set_delay(0.02)
    d.cluster.worker("w0", threads=2)
    d.cluster.worker("w1", threads=2)
    d.cluster.clock("clock")
    wait_until(lambda: len(alive_workers()) == 2, timeout=60, what="two live workers")
    task_id = import_people(tmp_path, 500, "redis-restart")
    wait_until(lambda: done_rows(task_id) >= 100, timeout=60, what="the import to get going")
    before = done_rows(task_id)
    restart_redis(d.settings.redis_url or "", down_for=1.5)
    back_at = time.monotonic()
    d.clerk.set_delay(0)
    wait_until(lambda: finished(task_id), timeout=120, what="the import to finish after the restart")
    assert_every_row_created_once(task_id, d.clerk, 500)
    assert all(d.cluster.procs[n].poll() is None for n in ("w0", "w1", "clock")), "a process died with Redis"
    report(capsys, f"Redis restarted with {before}/500 rows done; finished {time.monotonic() - back_at:.1f} s after "
                   f"Redis was back; re-queued: {len(log_entries(task_id, 'Re-queued'))} time(s)")


def test_two_clocks_still_run_one_probe_per_interval(deployment, capsys):
    d = deployment
    d.cluster.worker("w0")
    wait_until(lambda: len(alive_workers()) == 1, timeout=60, what="a live worker")
    for name in ("clock-a", "clock-b"):
        d.cluster.spawn(name, [sys.executable, "-m", "actors.clock"], SCHOLARISE_HEALTH_INTERVAL="1")
    wait_until(lambda: all("Scheduler started" in d.cluster.log(c) for c in ("clock-a", "clock-b")), timeout=60,
               what="both clocks")
    first = round(time.time()) + 1  # the first whole interval both clocks are up for
    time.sleep(6.5)
    last = round(time.time()) - 1  # leave the newest slot time to finish
    with session_scope(factory()) as session:
        runs = session.execute(select(HealthRun.slot, HealthRun.status).where(HealthRun.trigger == "schedule")).all()
    slots = sorted(r.slot for r in runs if first <= r.slot <= last)
    fired = [len(re.findall(r'Job "health probe.*executed successfully', d.cluster.log(c)))
             for c in ("clock-a", "clock-b")]
    report(capsys, f"two clocks, interval 1 s: they enqueued {fired} probes in all; slots {first}..{last} "
                   f"each ran once: {slots == list(range(first, last + 1))} ({len(runs)} runs in all)")
    assert slots == list(range(first, last + 1))  # one run per interval: none missing, none twice
    assert min(fired) >= len(slots)  # and both clocks did enqueue every one of them
    assert all(r.status is not None for r in runs)


def _init_lines(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"Services initialised in process (\d+)", text)]


def _scheduler_lines(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"Scheduler started in process (\d+)", text)]


def _embedded_env(tmp_path: Path) -> tuple[dict[str, str], Settings]:
    env = worker_env(SCHOLARISE_INSTANCE_PATH=str(tmp_path / "embedded"), **FAST)
    settings = Settings.from_env(env)
    upgrade(settings)
    return env, settings


def _alive_with_role(settings: Settings, role: str) -> list[str]:
    from scholarise import heartbeats
    from scholarise.db import make_engine, make_session_factory

    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return [p["id"] for p in heartbeats.describe(session, timeout=settings.heartbeat_timeout)
                    if role in p["roles"] and p["state"] == "alive"]
    finally:
        engine.dispose()


def test_four_gunicorn_workers_initialise_once_each_and_run_one_scheduler(tmp_path, capsys):
    env, settings = _embedded_env(tmp_path)
    cluster = Cluster(env, tmp_path)
    try:
        master = cluster.spawn("web", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "4",
                                       "-b", f"127.0.0.1:{free_port()}"])
        wait_until(lambda: len(_init_lines(cluster.log("web"))) >= 4, timeout=60, what="four initialisations")
        time.sleep(1.5)  # nothing initialises twice, later
        inits = _init_lines(cluster.log("web"))
        assert len(inits) == len(set(inits)) == 4 and set(inits) == set(children(master.pid))
        assert len(_scheduler_lines(cluster.log("web"))) == 1
        wait_until(lambda: len(_alive_with_role(settings, "web")) == 4, timeout=10, what="four web heartbeats")
        [holder] = _alive_with_role(settings, "scheduler")
        os.kill(int(holder.rpartition(":")[2]), signal.SIGKILL)  # gunicorn respawns it; another takes over
        wait_until(lambda: len(_init_lines(cluster.log("web"))) == 5, timeout=30, what="the respawned worker")
        # The killed holder still looks alive until its heartbeat times out: wait for that, not just for a newcomer.
        wait_until(lambda: len(taken := _alive_with_role(settings, "scheduler")) == 1 and taken != [holder],
                   timeout=15, what="another worker to take the scheduler over")
        time.sleep(2 * settings.heartbeat_interval)  # and no second one starts later
        assert len(_alive_with_role(settings, "scheduler")) == 1
        assert len(_scheduler_lines(cluster.log("web"))) == 2  # the first holder, then exactly one successor
        report(capsys, f"gunicorn -w 4: initialised once in each of {sorted(inits)}; one scheduler; after SIGKILL "
                       f"of its holder {holder} it moved to {_alive_with_role(settings, 'scheduler')[0]}")
    finally:
        cluster.stop_all()


def test_the_flask_reloader_initialises_only_the_serving_child_once_per_reload(tmp_path, capsys):
    env, settings = _embedded_env(tmp_path)
    trigger = tmp_path / "reload-trigger.txt"
    trigger.write_text("1")
    cluster = Cluster(env, tmp_path)
    try:
        # Only the trigger reloads it: other people editing this tree must not (hence the exclusion).
        parent = cluster.spawn("flask", [sys.executable, "-m", "flask", "--app", "admin.wsgi", "run", "--debug",
                                         "--port", str(free_port()), "--extra-files", str(trigger),
                                         "--exclude-patterns", f"{ROOT}{os.sep}*"])
        wait_until(lambda: len(_init_lines(cluster.log("flask"))) >= 1, timeout=60, what="the first start")
        time.sleep(1)
        [first] = _init_lines(cluster.log("flask"))
        assert first != parent.pid and f"not started in process {parent.pid}" in cluster.log("flask")
        time.sleep(1.1)  # the stat reloader compares modification times at one-second resolution
        trigger.write_text("2")
        wait_until(lambda: len(_init_lines(cluster.log("flask"))) >= 2, timeout=60, what="the reloaded start")
        time.sleep(1)
        inits = _init_lines(cluster.log("flask"))
        assert len(inits) == len(set(inits)) == 2 and parent.pid not in inits
        assert _scheduler_lines(cluster.log("flask")) == inits  # one scheduler per generation, in the child
        wait_until(lambda: _alive_with_role(settings, "scheduler") == [f"{_host()}:{inits[1]}"], timeout=10,
                   what="the new child's scheduler")
        report(capsys, f"flask --debug: watcher {parent.pid} started nothing; children {inits} once each")
    finally:
        cluster.stop_all()


def _host() -> str:
    import socket

    return socket.gethostname()


@pytest.mark.parametrize(("grace_ms", "delay", "outcome"), [(10_000, 0.05, "finishes"), (1_000, 0.4, "hands back")])
def test_sigterm_mid_batch_exits_within_the_grace_period_and_loses_or_repeats_nothing(
        deployment, tmp_path, capsys, grace_ms, delay, outcome):
    d = deployment
    d.clerk.set_delay(delay)
    d.cluster.worker("victim", threads=1, shutdown_timeout_ms=grace_ms)
    victim_id = f"{_host()}:{d.cluster.worker_child('victim')}"
    wait_until(lambda: victim_id in alive_workers(), timeout=60, what="the victim to register")
    d.cluster.clock("clock")
    task_id = import_people(tmp_path, 40, f"sigterm-{grace_ms}")
    wait_until(lambda: bool(held_rows(victim_id)), timeout=30, interval=0.02, what="the victim to hold a batch")
    d.cluster.worker("rescuer", threads=2)
    held = held_rows(victim_id)[victim_id]
    signalled = time.monotonic()
    d.cluster.signal_group("victim", signal.SIGTERM)  # like honcho or systemd: the whole process group
    code = d.cluster.procs["victim"].wait(grace_ms / 1000 + 10)
    exited = time.monotonic() - signalled
    d.clerk.set_delay(0)  # the rescuer finishes the rest at full speed
    wait_until(lambda: finished(task_id), timeout=90, what="the import to finish")
    assert_every_row_created_once(task_id, d.clerk, 40)
    handed_back = log_entries(task_id, "the worker shut down before its batch finished")
    with session_scope(factory()) as session:
        beat = session.get(WorkerHeartbeat, victim_id)
        assert beat is not None and beat.stopped_at is not None  # it said goodbye; no timeout needed
        assert set(session.scalars(select(TaskItem.status).where(TaskItem.id.in_(held)))) == {ItemStatus.CREATED}
    report(capsys, f"SIGTERM (grace {grace_ms} ms, {delay} s per provider call): exited with {code} after "
                   f"{exited:.1f} s; its batch of {len(held)} rows {outcome} ({len(handed_back)} hand-back)")
    assert exited < grace_ms / 1000 + 3
    assert bool(handed_back) == (outcome == "hands back")


def test_status_reflects_a_stopped_worker_within_one_heartbeat_timeout(deployment, capsys):
    from admin import create_app
    from scholarise.api_tokens import create_token

    d = deployment
    with session_scope(factory()) as session:
        token = create_token(session, role="admin", name="status test").secret
    client = create_app(d.settings).test_client()

    def state_of(worker_id: str) -> str | None:
        answer = client.get("/api/init?action=status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_json()
        states = {w["id"]: w["state"] for w in answer.get_json()["status"]["workers"]}
        return states.get(worker_id)

    d.cluster.worker("killed")
    d.cluster.worker("stopped")
    killed = f"{_host()}:{d.cluster.worker_child('killed')}"
    stopped = f"{_host()}:{d.cluster.worker_child('stopped')}"
    wait_until(lambda: state_of(killed) == "alive" and state_of(stopped) == "alive", timeout=60, what="both alive")
    d.cluster.signal_group("killed", signal.SIGKILL)
    gone = time.monotonic()
    wait_until(lambda: state_of(killed) == "lost", timeout=10, interval=0.1, what="the killed worker to show lost")
    lost_after = time.monotonic() - gone
    d.cluster.signal_group("stopped", signal.SIGTERM)
    gone = time.monotonic()
    wait_until(lambda: state_of(stopped) != "alive", timeout=10, interval=0.1, what="the stopping worker")
    stopping_after = time.monotonic() - gone
    wait_until(lambda: state_of(stopped) == "stopped", timeout=10, interval=0.1, what="the stopped worker")
    stopped_after = time.monotonic() - gone
    report(capsys, f"/api/init?action=status: SIGKILLed worker shown lost after {lost_after:.1f} s; SIGTERMed "
                   f"worker shown stopping after {stopping_after:.1f} s and stopped after {stopped_after:.1f} s "
                   f"(heartbeat every 0.5 s, timeout 2 s)")
    assert lost_after <= 2 + 0.5 + 1  # the timeout, one beat of slack, and the polling
    assert stopping_after <= 2  # Dramatiq looks at its stop flag once a second
    assert stopped_after <= 2 + 3  # then lets idle threads and consumers notice (about a second each)

