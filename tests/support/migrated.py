"""A migrated SQLite database copied per test instead of migrated per test.

Running the Alembic chain takes about half a second; copying a database that went through it
once per test session (SQLite's online backup API, safe with WAL) takes a few milliseconds. The
copy has exactly the schema the migrations build (tests/test_migrations.py checks that against
the models).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from scholarise.config import Settings
from scholarise.db import upgrade

_template: list[Path] = []


def migrated_copy(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Put a freshly migrated SQLite database at ``settings.database_url``; returns ``settings``."""
    if not settings.database_url.startswith("sqlite:///"):
        upgrade(settings)
        return settings
    if not _template:
        folder = tmp_path_factory.mktemp("migrated-template")
        upgrade(Settings(instance_path=folder, broker="stub", secret_key="template-secret-key-0123"))
        _template.append(folder / "scholarise.db")
    target = Path(settings.database_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(_template[0])) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return settings
