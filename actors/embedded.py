"""The embedded mode: Dramatiq worker threads inside this process (no Redis needed)."""

from __future__ import annotations

import logging
import os
import socket

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


def start_worker(threads: int | None = None) -> dramatiq.Worker:
    """Start in-process worker threads on the configured broker and pick up work left by a previous run."""
    rt = runtime.current()
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=threads or rt.settings.worker_threads,
                             worker_timeout=100)
    worker.start()
    released = recover_local_claims()
    rung = ring_all()
    from actors.notifications import recover_outbox  # the in-process broker lost queued emails on restart

    emails = recover_outbox()
    logger.info("embedded worker started (%d threads); %d rows recovered, %d tasks resumed, %d emails queued",
                threads or rt.settings.worker_threads, released, rung, emails)
    return worker
