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
    """web, worker and clock each upgrade at start; started together they queue on a lock."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": any_db_settings.database_url,
           "SCHOLARISE_INSTANCE_PATH": str(any_db_settings.instance_path)}
    code = "from scholarise.config import Settings; from scholarise.db import upgrade; upgrade(Settings.from_env())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-500:] for _, err in results]
