"""Shared fixtures: settings, databases (SQLite and real PostgreSQL), brokers, workers, the Clerk stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from sqlalchemy.orm import Session, sessionmaker

from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from tests.support import services

DEMO = Path(__file__).resolve().parents[1] / "demo"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings on a fresh SQLite file; tests drive the workers themselves."""
    return Settings(instance_path=tmp_path / "instance", broker="stub", batch_size=10, progress_interval=0.0,
                    worker_threads=2, secret_key="test-secret-key-0123456789")


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """The same settings on SQLite and on a fresh database of the real PostgreSQL server."""
    if request.param == "sqlite":
        yield settings
        return
    base = services.require("postgres", services.postgres_url())
    with services.temporary_postgres_database(base) as url:
        yield settings.replace(database_url=url)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    upgrade(settings)
    return settings


@pytest.fixture
def session_factory(migrated: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_scope(session_factory) as s:
        yield s


def configure_actors(settings: Settings) -> dramatiq.Broker:
    import actors

    upgrade(settings)
    return actors.configure(settings)


@pytest.fixture
def broker(migrated: Settings) -> Iterator[dramatiq.Broker]:
    """Actors configured on a stub broker for ``settings`` (messages run only when a worker runs)."""
    from actors import runtime

    b = configure_actors(migrated)
    yield b
    b.flush_all()
    b.close()
    runtime.set_runtime(None)


@pytest.fixture
def worker(broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    w = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    w.start()
    yield w
    w.stop()


def drain(broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    """Run until no message is left (doorbells re-ring until the work in the database is done)."""
    broker.join("imports", fail_fast=True)
    worker.join()


@pytest.fixture
def fake_clerk() -> Iterator[object]:
    from tests.support.fake_clerk import FakeClerk

    with FakeClerk(secret_keys=["sk_test_fake_key_for_tests"]) as server:
        yield server
