"""Where the test suite finds its real services, and small helpers to use them in isolation.

``make test`` runs pytest under ``scripts/with-test-services.sh``, which starts a throw-away
redis-server and PostgreSQL on 127.0.0.1 and exports:

* ``REDIS_TEST_URL``   ``redis://127.0.0.1:P/0``  (and ``REDIS_SERVER_BIN``)
* ``POSTGRES_TEST_URL`` ``postgresql://postgres@127.0.0.1:Q/scholarise_test`` (superuser, trust auth)
* ``CHROMIUM_BIN``     ``/usr/bin/chromium``      (and ``CHROMEDRIVER_BIN``)
* ``SCHOLARISE_TEST_SERVICES=1`` and ``SCHOLARISE_TEST_SERVICES_DIR``

A plain ``pytest`` run without them skips the tests that need a service; with ``CI=true`` a missing
service fails instead, so CI can never pass by skipping. Nothing here guesses a default server
(e.g. a developer's redis on 6379): tests flush and drop what they are given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

_HOW = {
    "redis": "REDIS_TEST_URL is not set; run `make test`, which starts a throw-away redis-server "
    "(apt package redis-server)",
    "postgres": "POSTGRES_TEST_URL is not set; run `make test`, which starts a throw-away PostgreSQL "
    "(apt package postgresql)",
    "chromium": "no Chromium found (CHROMIUM_BIN or /usr/bin/chromium); run `make test`, which installs "
    "it when root (apt packages chromium chromium-driver)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def managed_run() -> bool:
    """True when the services were started by scripts/with-test-services.sh (``make test``)."""
    return os.environ.get("SCHOLARISE_TEST_SERVICES") == "1"


def redis_url() -> str | None:
    return os.environ.get("REDIS_TEST_URL") or None


def redis_server_bin() -> str | None:
    path = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    return path if path and os.access(path, os.X_OK) else None


def postgres_url() -> str | None:
    return os.environ.get("POSTGRES_TEST_URL") or None


def chromium_path() -> str | None:
    """Chromium needs no server, so outside ``make test`` the Debian binary is used if installed."""
    candidates = [os.environ.get("CHROMIUM_BIN"), "/usr/bin/chromium", shutil.which("chromium")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def require(name: str, value: str | None) -> str:
    """Return ``value``; if it is missing, skip the test locally but fail it under ``CI=true``."""
    if value:
        return value
    how = _HOW.get(name, f"run `make test`, which provides {name}")
    message = f"{name} is not available: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: required services must not be skipped)", pytrace=False)
    pytest.skip(message)


# --- PostgreSQL -------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _libpq_url(url: str) -> str:
    """Accept SQLAlchemy spellings too (``postgresql+psycopg2://``)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql",) + tuple(parts[1:]))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _admin_connection(url: str):
    import psycopg

    conn = psycopg.connect(_libpq_url(_with_database(url, "postgres")), connect_timeout=10)
    conn.autocommit = True
    return conn


def fresh_postgres_database(base_url: str, prefix: str = "scholarise_t") -> str:
    """Create an empty, uniquely named database on ``base_url``'s server and return its URL
    (same scheme, credentials, host and query as ``base_url``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    conn = _admin_connection(base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0 ENCODING 'UTF8'")
    finally:
        conn.close()
    return _with_database(base_url, name)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, even if connections to it are still open (PostgreSQL 13+)."""
    name = _database_name(url)
    if not name or name in {"postgres", "template0", "template1"}:
        raise ValueError(f"refusing to drop database {name!r}")
    conn = _admin_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        conn.close()


@contextlib.contextmanager
def temporary_postgres_database(base_url: str) -> Iterator[str]:
    """``with temporary_postgres_database(postgres_url()) as url: ...`` — created, then dropped."""
    url = fresh_postgres_database(base_url)
    try:
        yield url
    finally:
        drop_database(url)


# --- Redis ------------------------------------------------------------------------------------


def flush_redis(url: str) -> None:
    """Empty the database ``url`` points at (``FLUSHDB``; other numbered databases are kept)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()
