"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scholarise.config import Settings
from scholarise.db import make_engine, upgrade
from scholarise.models import Base


def test_migrations_match_the_models(any_db_settings: Settings) -> None:
    upgrade(any_db_settings)
    upgrade(any_db_settings)  # idempotent
    engine = make_engine(any_db_settings)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_processes_starting_together_can_all_upgrade(any_db_settings: Settings) -> None:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(any_db_settings)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
