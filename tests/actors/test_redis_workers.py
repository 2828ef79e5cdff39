"""Real Redis, real PostgreSQL, two Dramatiq worker processes, the loopback Clerk stand-in."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import actors
from actors import runtime
from scholarise.config import Settings
from scholarise.db import session_scope, upgrade
from scholarise.models import BackgroundTask, ItemStatus, TaskItem, TaskStatus
from tests.support import services
from tests.support.fake_clerk import FakeClerk
from tests.support.workers import start_worker, stop_worker, wait_until, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]
KEY = "sk_test_redis_workers_key"


@pytest.fixture
def clerk() -> Iterator[FakeClerk]:
    with FakeClerk(KEY, rate_limit=200, window=10.0) as server:  # 20 requests/s
        yield server


@pytest.fixture
def cluster(tmp_path: Path, clerk: FakeClerk) -> Iterator[tuple[Settings, dict[str, str]]]:
    redis_url = services.require("redis", services.redis_url())
    base = services.require("postgres", services.postgres_url())
    services.flush_redis(redis_url)
    with services.temporary_postgres_database(base) as db_url:
        env = worker_env(REDIS_URL=redis_url, DATABASE_URL=db_url, CLERK_SECRET_KEY=KEY, CLERK_API_URL=clerk.url,
                         SCHOLARISE_PROVIDER_RATE_LIMIT="200", SCHOLARISE_PROVIDER_RATE_WINDOW="10",
                         SCHOLARISE_INSTANCE_PATH=str(tmp_path / "instance"), SCHOLARISE_BATCH_LEASE_SECONDS="600")
        settings = Settings.from_env(env)
        upgrade(settings)
        actors.configure(settings)
        yield settings, env
        runtime.set_runtime(None)
        services.flush_redis(redis_url)


def people(n: int) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(n)]


def status(task_id: int) -> str:
    return actors.get_task(task_id)["status"]


def test_two_worker_processes_create_every_row_once_under_the_rate_limit(cluster, clerk, tmp_path):
    settings, env = cluster
    workers = [start_worker(env, threads=4, log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        task_id = actors.create_bulk_task("BULK_USER_CREATION", "Redis import", "", {
            "type": "teacher", "branch": "Main", "items": people(120)})
        wait_until(lambda: status(task_id) in TaskStatus.FINISHED, timeout=120, what="the import to finish")
    finally:
        for w in workers:
            stop_worker(w)
    summary = actors.get_task(task_id)
    stats = clerk.stats()
    assert (summary["status"], summary["created"], summary["failed"]) == (TaskStatus.COMPLETED, 120, 0)
    assert stats["users"] == 120 and set(stats["created_per_email"].values()) == {1}
    assert stats["rate_limited"] == 0


def test_a_worker_killed_mid_task_is_resumed_and_every_row_created_once(cluster, clerk, tmp_path):
    settings, env = cluster
    clerk.set_delay(0.05)
    victim = start_worker(env, threads=2, log=tmp_path / "victim.log")
    task_id = actors.create_bulk_task("BULK_USER_CREATION", "Kill me", "", {
        "type": "teacher", "branch": "Main", "items": people(150)})

    def claimed() -> bool:
        with session_scope(runtime.current().session_factory) as session:
            held = select(TaskItem.id).where(TaskItem.status == ItemStatus.PROCESSING).limit(1)
            return session.scalar(held) is not None

    wait_until(lambda: clerk.stats()["users"] >= 20 and claimed(), timeout=60, what="the victim to be mid-batch")
    stop_worker(victim, sig=signal.SIGKILL)
    assert status(task_id) == TaskStatus.RUNNING
    survivor = start_worker(env, threads=2, log=tmp_path / "survivor.log")
    try:
        released = actors.resume_task(task_id)
        assert released > 0
        wait_until(lambda: status(task_id) in TaskStatus.FINISHED, timeout=120, what="the resumed import to finish")
    finally:
        stop_worker(survivor)
    summary = actors.get_task(task_id)
    stats = clerk.stats()
    assert (summary["status"], summary["created"], summary["existing"]) == (TaskStatus.COMPLETED, 150, 0)
    assert stats["users"] == 150 and set(stats["created_per_email"].values()) == {1}
    with session_scope(runtime.current().session_factory) as session:
        task = session.get(BackgroundTask, task_id)
        assert task.created_count == 150
