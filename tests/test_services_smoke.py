"""The real services the suite relies on are reachable (skips locally without them, fails in CI)."""

import subprocess

import pytest

from tests.support.services import (
    chromium_path,
    drop_database,
    flush_redis,
    fresh_postgres_database,
    postgres_url,
    redis_url,
    require,
)


@pytest.mark.redis
def test_redis_answers_ping():
    import redis

    url = require("redis", redis_url())
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True
        client.set("scholarise:smoke", "1")
        flush_redis(url)
        assert client.get("scholarise:smoke") is None
    finally:
        client.close()


@pytest.mark.postgres
def test_postgres_select_1_in_a_fresh_database():
    import psycopg

    base = require("postgres", postgres_url())
    with psycopg.connect(base, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()

    url = fresh_postgres_database(base)
    try:
        conn = psycopg.connect(url, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_database()")
                assert cur.fetchone()[0] == url.rsplit("/", 1)[1]
        finally:
            conn.close()
    finally:
        drop_database(url)


@pytest.mark.browser
def test_chromium_reports_its_version():
    path = require("chromium", chromium_path())
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Chromium" in result.stdout
