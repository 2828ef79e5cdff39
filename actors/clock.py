"""The clock: APScheduler jobs that only enqueue — a health probe every ``health_interval`` seconds and a
recovery pass every ``heartbeat_timeout`` seconds. ``python -m actors.clock`` (Procfile ``clock``)
runs it in the distributed mode; in the embedded mode the web process that holds the instance
folder's scheduler lock runs the same jobs in a background scheduler.

Scheduling choices, deliberately:

* Probe fire times are aligned to multiples of the interval since the epoch, so every clock fires
  at the same instants and names the same slot (``round(time / interval)``); the actor lets one
  run per slot. Starting two clocks therefore never doubles the probes.
* ``coalesce=True``: after a pause (a suspended VM, a long GC) missed runs collapse into one.
* ``misfire_grace_time`` of half the probe interval: a run more than that late belongs to the next
  slot, which is coming anyway, so it is skipped. Recovery may be late by one whole period.
* ``max_instances=1``: if the broker hangs, sends do not pile up in threads.
* One extra probe (trigger ``startup``) a few seconds after the scheduler starts, so the dashboard
  shows a fresh result right after a deploy instead of "no health check yet" for five minutes.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from actors import heartbeat
from scholarise.config import Settings
from scholarise.health import slot_for
from scholarise.models import ProcessRole

logger = logging.getLogger(__name__)

STARTUP_PROBE_DELAY = 3.0  # seconds: the web process's own start-up (about 1 s) and a worker come first


def enqueue_probe(interval: float) -> None:
    """Job: ask a worker to run the probes for the current slot."""
    from actors.health import run_health_probe

    run_health_probe.send(slot_for(time.time(), interval), "schedule")


def enqueue_startup_probe() -> None:
    """Job: one on-demand probe soon after the scheduler starts (not tied to a slot)."""
    from actors.health import run_health_probe

    run_health_probe.send(None, "startup")


def enqueue_recovery() -> None:
    """Job: ask a worker for a recovery pass."""
    from actors.health import recover_work

    recover_work.send()


def add_jobs(scheduler: BaseScheduler, settings: Settings) -> BaseScheduler:
    """Put the probe and recovery jobs on ``scheduler`` (see the module docstring for the options)."""
    interval = settings.health_interval
    first = datetime.fromtimestamp(math.ceil(time.time() / interval) * interval, tz=UTC)
    scheduler.add_job(enqueue_probe, IntervalTrigger(seconds=interval, start_date=first, timezone=UTC),
                      args=[interval], id="health-probe", name="health probe", replace_existing=True,
                      coalesce=True, max_instances=1, misfire_grace_time=max(1, int(interval / 2)))
    soon = datetime.now(UTC) + timedelta(seconds=STARTUP_PROBE_DELAY)
    scheduler.add_job(enqueue_startup_probe, DateTrigger(run_date=soon), id="startup-probe", name="startup probe",
                      replace_existing=True, misfire_grace_time=max(1, int(interval / 2)))
    every = settings.heartbeat_timeout
    scheduler.add_job(enqueue_recovery, IntervalTrigger(seconds=every, timezone=UTC), id="recover-work",
                      name="recovery pass", replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=max(1, int(every)))
    return scheduler


class SchedulerLock:
    """An exclusive ``flock`` on ``instance/scheduler.lock``: one scheduler per embedded deployment.

    The kernel drops the lock when the holder exits, however it exits, so another web process
    (a reloaded child, a respawned gunicorn worker) takes over on its next heartbeat.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.instance_path / "scheduler.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class EmbeddedClock:
    """The scheduler of the embedded mode, inside a web process, started only by the lock holder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = SchedulerLock(settings)
        self.scheduler: BackgroundScheduler | None = None
        self._guard = threading.RLock()  # the heartbeat thread may be starting it while a restart stops it
        self._stopped = False

    @property
    def running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def try_start(self) -> bool:
        """Start if this process gets the lock; otherwise retry on every heartbeat until it does."""
        with self._guard:
            return self._try_start()

    def _try_start(self) -> bool:
        beat = heartbeat.current()
        if self._stopped:
            return False  # a heartbeat that was already under way when stop() ran
        if self.running:
            return True
        if not self.lock.acquire():
            if self._retry not in beat.on_beat:
                beat.on_beat.append(self._retry)
            return False
        if self._retry in beat.on_beat:
            beat.on_beat.remove(self._retry)
        self.scheduler = add_jobs(BackgroundScheduler(timezone=UTC), self.settings)
        self.scheduler.start()
        beat.add_role(ProcessRole.SCHEDULER)
        beat.beat()
        logger.info("Scheduler started in process %s (health probe every %g s)", os.getpid(),
                    self.settings.health_interval)
        return True

    def _retry(self) -> None:
        self.try_start()

    def stop(self) -> bool:
        """Stop the scheduler (if this process ran it) and give the lock back; True if it was running."""
        with self._guard:
            return self._stop()

    def _stop(self) -> bool:
        self._stopped = True
        beat = heartbeat.current()
        if self._retry in beat.on_beat:
            beat.on_beat.remove(self._retry)
        was_running = self.running
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None
        self.lock.release()
        beat.remove_role(ProcessRole.SCHEDULER)
        return was_running


def run(settings: Settings) -> None:
    """Run the clock in the foreground until SIGTERM/SIGINT (the ``clock`` process of the Procfile).

    Raises:
        scholarise.errors.ConfigError: not in the distributed mode (the embedded web process runs
            its own scheduler, and a separate clock could not reach its in-process broker).
    """
    from actors.broker import configure
    from scholarise.errors import ConfigError

    if settings.broker != "redis":
        raise ConfigError("The clock process needs REDIS_URL: in the embedded mode the web process runs the "
                          "scheduler itself (scholarise serve).")
    configure(settings)
    scheduler = add_jobs(BlockingScheduler(timezone=UTC), settings)
    beat = heartbeat.current()
    beat.add_role(ProcessRole.SCHEDULER)
    beat.start(settings)

    def stop(signum: int, _frame: Any) -> None:
        logger.info("clock: %s received, stopping", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("Clock %s started: health probe every %g s, recovery every %g s", beat.worker_id,
                   settings.health_interval, settings.heartbeat_timeout)
    try:
        scheduler.start()
    finally:
        beat.stop()
        logger.info("Clock %s stopped", beat.worker_id)


def main() -> int:
    """Entry point of ``python -m actors.clock``: settings from the environment, logs to stderr."""
    from scholarise.errors import ScholariseError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from scholarise.db import upgrade

    try:
        settings = Settings.from_env()
        upgrade(settings)  # idempotent and locked (every process of a deployment does this at start)
        run(settings)
    except ScholariseError as exc:
        print(f"clock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
