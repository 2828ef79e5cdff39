"""Engine, sessions and schema migrations.

Nothing connects at import: engines and session factories are built from :class:`Settings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from scholarise.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def make_engine(settings: Settings) -> Engine:
    """An engine for ``settings.database_url``; SQLite gets WAL and a busy timeout for concurrent workers."""
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        prepare_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def prepare_sqlite(engine: Engine, *, immediate: bool = True) -> None:
    """WAL, foreign keys, a busy timeout and, with ``immediate``, ``BEGIN IMMEDIATE`` for every transaction.

    SQLite allows one writer at a time; a deferred transaction that reads and then writes can fail
    at once with "database is locked" when another writer got in between, whatever the timeout.
    Taking the write lock at BEGIN makes writers queue instead. The web app's engine does not: a
    request reads through it while calling services that write through the services' own engine,
    and an immediate transaction held by the request would block those writes until it ends.
    """

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy issue BEGIN itself so "BEGIN IMMEDIATE" below takes the write lock early.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (services hand objects back to callers)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(settings: Settings):  # type: ignore[no-untyped-def]
    """Alembic's config pointed at our migrations folder and ``settings.database_url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema up to ``revision``: idempotent, and safe when several processes start at once.

    Every process of a deployment (web, worker, clock) calls this at start, so no separate release
    step is needed (``honcho start`` stops everything when a one-shot process exits). Concurrent
    callers queue on a lock: a PostgreSQL advisory lock (taken in ``migrations/env.py``) or, for
    SQLite, a file lock beside the database; the second one then finds nothing to do.
    """
    from alembic import command

    if not settings.database_url.startswith("sqlite"):
        command.upgrade(alembic_config(settings), revision)
        return
    import fcntl

    settings.instance_path.mkdir(parents=True, exist_ok=True)
    with open(settings.instance_path / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(alembic_config(settings), revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
