"""Dramatiq middleware: every worker process registers itself, beats, and leaves nothing owned when it stops.

On SIGTERM Dramatiq stops taking messages, requeues what it prefetched and lets each running
message finish within ``--worker-shutdown-timeout``; a batch finishes and rings the next doorbell
for another worker. If a batch outlives that grace period, the process exits anyway: the rows it
still holds are handed back here, on the way out, so a live worker resumes them at once instead
of waiting for the heartbeat timeout.

One trap, handled here: process managers that signal the whole process group (honcho, systemd's
default ``KillMode=control-group``, ``docker stop`` with an init that forwards to the group)
deliver SIGTERM to Dramatiq's worker process twice — once directly and once forwarded by
Dramatiq's main process — and Dramatiq treats a second SIGTERM as "kill now". A duplicate that
arrives within a couple of seconds of the first is therefore ignored; a later one still kills.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import signal
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from actors import heartbeat, runtime
from scholarise import claims, processing
from scholarise.db import session_scope
from scholarise.models import ProcessRole

logger = logging.getLogger(__name__)


def _consumed_queues(broker: dramatiq.Broker, worker: Any) -> list[str]:
    queues = getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues()
    return sorted(q for q in queues if not q.endswith((".DQ", ".XQ")))


DUPLICATE_SIGNAL_WINDOW = 2.0


class WorkerHeartbeats(Middleware):
    """Registers the worker process in ``worker_heartbeats`` and refreshes it from a background thread."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        beat = heartbeat.current()
        beat.add_role(ProcessRole.WORKER, _consumed_queues(broker, worker))
        beat.start(runtime.current().settings)
        _ignore_duplicate_sigterm()
        # Runs at interpreter exit and at the end of a multiprocessing child (which skips atexit): if the
        # process is leaving without a clean worker shutdown (a second signal), hand its rows back anyway.
        multiprocessing.util.Finalize(None, _on_exit, exitpriority=100)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        heartbeat.current().set_stopping(True)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        beat = heartbeat.current()
        handed_back = release_own_claims(beat.worker_id)
        beat.remove_role(ProcessRole.WORKER)
        if beat.roles:
            beat.set_stopping(False)  # the web process of the embedded mode lives on
        else:
            beat.stop()
        if handed_back:
            logger.warning("worker %s stopped with %d rows unfinished; they were handed back", beat.worker_id,
                           handed_back)


def release_own_claims(worker_id: str) -> int:
    """Hand back rows this process still holds (a batch that outlived the shutdown timeout) and ring for them."""
    from actors.imports import ring

    try:
        with session_scope(runtime.current().session_factory) as session:
            tasks = processing.tasks_with_work(session)
            count = claims.release_claims(session, [worker_id],
                                              why="the worker shut down before its batch finished")
    except Exception as exc:  # noqa: BLE001 - recovery releases them after the heartbeat timeout
        logger.warning("could not hand back the rows of %s on shutdown: %s", worker_id, exc)
        return 0
    if count:
        for task_id in tasks:
            try:
                ring(task_id)
            except Exception as exc:  # noqa: BLE001 - the clock's recovery re-rings stalled work
                logger.warning("could not ring task %s on shutdown: %s", task_id, exc)
    return count


def _on_exit() -> None:
    beat = heartbeat.current()
    if ProcessRole.WORKER in beat.roles:
        release_own_claims(beat.worker_id)
        beat.stop()


def _ignore_duplicate_sigterm() -> None:
    """Wrap the worker process's SIGTERM handler so a group-wide duplicate does not turn a stop into a kill."""
    if threading.current_thread() is not threading.main_thread():
        return  # an embedded worker started from a thread: the host process owns its signals
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or getattr(previous, "_scholarise_guard", False):
        return  # the default action (not the Dramatiq CLI), or already wrapped
    first: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        now = time.monotonic()
        if first and now - first[0] < DUPLICATE_SIGNAL_WINDOW:
            logger.info("ignoring a duplicate SIGTERM (the process group was signalled); still stopping gracefully")
            return
        first[:] = [now]
        previous(signum, frame)

    handler._scholarise_guard = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, handler)
