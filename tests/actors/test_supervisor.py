"""``scholarise worker`` (the Procfile's worker) keeps Dramatiq running when one of its processes dies.

Real processes on the real test Redis: Dramatiq's main process exits when a worker process is
SIGKILLed; the supervisor starts it again, and a group-wide SIGTERM (as honcho sends) still stops
everything cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scholarise import heartbeats
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from tests.support import services
from tests.support.workers import wait_until, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _live_workers(settings: Settings) -> set[int]:
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return {p["pid"] for p in heartbeats.describe(session, timeout=settings.heartbeat_timeout)
                    if "worker" in p["roles"] and p["state"] == "alive"}
    finally:
        engine.dispose()


def test_a_dead_worker_process_is_restarted_and_sigterm_still_stops_cleanly(tmp_path: Path) -> None:
    url = services.require("redis", services.redis_url())
    env = worker_env(SCHOLARISE_INSTANCE_PATH=str(tmp_path / "instance"), REDIS_URL=url,
                     SCHOLARISE_HEARTBEAT_INTERVAL="0.5", SCHOLARISE_HEARTBEAT_TIMEOUT="2")
    settings = Settings.from_env(env)
    upgrade(settings)
    log = tmp_path / "worker.log"
    script = Path(sys.executable).with_name("scholarise")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(script), "worker", "--processes", "2", "--threads", "1", "--shutdown-timeout",
                                 "2000"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: len(_live_workers(settings)) == 2, timeout=60, what="two worker processes")
        first = _live_workers(settings)
        os.kill(min(first), signal.SIGKILL)
        wait_until(lambda: len(_live_workers(settings) - first) == 2, timeout=60,
                   what="Dramatiq started again with two new worker processes")
        assert proc.poll() is None, log.read_text()
        assert "restarting it in 1 s" in log.read_text()
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as honcho and systemd do
        assert proc.wait(20) == 0, log.read_text()
        assert _live_workers(settings) == set()  # every process said goodbye
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        services.flush_redis(url)
