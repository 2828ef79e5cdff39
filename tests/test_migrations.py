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
