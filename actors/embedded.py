"""The embedded mode: Dramatiq worker threads inside this process (no Redis needed)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import dramatiq

from actors import runtime
from actors.imports import ring
from scholarise import claims, processing
from scholarise.db import session_scope

logger = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_local_claims() -> int:
    """Release rows claimed by processes of this host that no longer run (a crashed or killed worker)."""
    host = socket.gethostname()
    with session_scope(runtime.current().session_factory) as session:
        dead = []
        for holder in claims.claim_holders(session):
            name, _, pid = (holder or "").rpartition(":")
            if name == host and pid.isdigit() and not _pid_alive(int(pid)):
                dead.append(holder)
        return claims.release_claims(session, dead, why="its process is no longer running")


def ring_all() -> int:
    """Ring once for every active task (after a start or a recovery); returns how many."""
    rt = runtime.current()
    with session_scope(rt.session_factory) as session:
        ids = processing.tasks_with_work(session)
    for task_id in ids:
        ring(task_id, rt.settings.worker_threads)
    return len(ids)


WATCH_INTERVAL = 2.0
RING_AGAIN_AFTER = 10.0


class EmbeddedWorker(dramatiq.Worker):
    """Dramatiq's worker plus a watcher for tasks queued by other processes.

    The in-process broker only hears doorbells rung in this process. A task created by the CLI
    (or retried from it) while the site runs was rung into the CLI's own broker, so every
    ``WATCH_INTERVAL`` seconds this process rings, once per ``RING_AGAIN_AFTER``, for each waiting task.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="scholarise-pending-watcher", daemon=True)

    def start(self) -> None:
        super().start()
        self._watcher.start()

    def stop(self, timeout: int = 600_000) -> None:
        self._watch_stop.set()
        super().stop(timeout)
        # Dramatiq's Worker registers a middleware on the broker that points back at the worker and is
        # never removed; drop ours so a restarted embedded worker does not stack them up.
        self.broker.middleware[:] = [m for m in self.broker.middleware if getattr(m, "worker", None) is not self]

    def _watch(self) -> None:
        rung_at: dict[int, float] = {}
        while not self._watch_stop.wait(WATCH_INTERVAL):
            try:
                with session_scope(runtime.current().session_factory) as session:
                    waiting = processing.waiting_tasks(session)
            except Exception:  # noqa: BLE001 - a busy or restarting database; try again next time
                logger.debug("pending watcher could not read the database", exc_info=True)
                continue
            now = time.monotonic()
            for task_id in waiting:
                if now - rung_at.get(task_id, -RING_AGAIN_AFTER) >= RING_AGAIN_AFTER:
                    rung_at[task_id] = now
                    ring(task_id, runtime.current().settings.worker_threads)


def start_worker(threads: int | None = None) -> dramatiq.Worker:
    """Start in-process worker threads on the configured broker and pick up work left by a previous run."""
    rt = runtime.current()
    worker = EmbeddedWorker(dramatiq.get_broker(), worker_threads=threads or rt.settings.worker_threads,
                            worker_timeout=100)
    worker.start()
    released = recover_local_claims()
    rung = ring_all()
    from actors.notifications import recover_outbox  # the in-process broker lost queued emails on restart

    emails = recover_outbox()
    logger.info("embedded worker started (%d threads); %d rows recovered, %d tasks resumed, %d emails queued",
                threads or rt.settings.worker_threads, released, rung, emails)
    return worker
