"""This process's heartbeat: one background thread per process that refreshes its ``WorkerHeartbeat`` row.

Web, worker and clock roles share the one row (``host:pid``, the id a worker stamps on its claims)
and the one thread. Database trouble never kills the thread: a missed beat is logged and retried.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable

from actors import runtime
from scholarise import heartbeats
from scholarise.config import Settings
from scholarise.db import session_scope
from scholarise.models import utcnow

logger = logging.getLogger(__name__)


class ProcessHeartbeat:
    """Says every ``settings.heartbeat_interval`` seconds that this process is alive, and what it holds."""

    def __init__(self) -> None:
        self.identity = heartbeats.Identity(socket.gethostname(), os.getpid(), utcnow())
        self.on_beat: list[Callable[[], None]] = []
        self._roles: dict[str, set[str]] = {}
        self._stopping = False
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = 5.0
        self._failures = 0

    @property
    def worker_id(self) -> str:
        return self.identity.worker_id

    @property
    def roles(self) -> list[str]:
        with self._lock:
            return sorted(self._roles)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add_role(self, role: str, queues: Iterable[str] = ()) -> None:
        with self._lock:
            self._roles.setdefault(role, set()).update(queues)
            self._stopping = False

    def remove_role(self, role: str) -> None:
        with self._lock:
            self._roles.pop(role, None)

    def start(self, settings: Settings) -> None:
        """Write the row now (so a worker is registered before it claims anything), then keep it fresh."""
        with self._lock:
            self._interval = settings.heartbeat_interval
            self.beat()
            if self.running:
                return
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="scholarise-heartbeat", daemon=True)
            self._thread.start()

    def beat(self) -> bool:
        """Refresh the row once; False (and a log line) when the database could not be written."""
        with self._lock:
            roles = set(self._roles)
            queues = set().union(*self._roles.values()) if self._roles else set()
            stopping = self._stopping
        try:
            rt = runtime.current()
            with session_scope(rt.session_factory) as session:
                heartbeats.beat(session, self.identity, roles=roles, queues=queues, stopping=stopping)
        except Exception as exc:  # noqa: BLE001 - keep beating; the next attempt may succeed
            self._failures += 1
            log = logger.warning if self._failures in (1, 10) or self._failures % 100 == 0 else logger.debug
            log("heartbeat of %s failed (%d in a row): %s", self.worker_id, self._failures, exc)
            return False
        self._failures = 0
        return True

    def set_stopping(self, stopping: bool = True) -> None:
        """Shown as "stopping" while a worker finishes its batch after SIGTERM."""
        with self._lock:
            self._stopping = stopping
        self.beat()

    def stop(self) -> None:
        """Stop beating and mark the row stopped, so status shows it at once rather than after the timeout."""
        thread, self._thread = self._thread, None
        self._wake.set()
        if thread is None:
            return  # never started: there is no row to close
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        try:
            with session_scope(runtime.current().session_factory) as session:
                heartbeats.mark_stopped(session, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - the row times out on its own
            logger.warning("could not mark %s stopped: %s", self.worker_id, exc)

    def _run(self) -> None:
        while not self._wake.wait(self._interval):
            self.beat()
            for hook in list(self.on_beat):
                try:
                    hook()
                except Exception:  # noqa: BLE001 - a hook must not stop the heartbeat
                    logger.exception("heartbeat hook %r failed", hook)


_current: ProcessHeartbeat | None = None
_current_lock = threading.Lock()


def current() -> ProcessHeartbeat:
    """This process's heartbeat (a fresh one after a fork: the child is a different process)."""
    global _current
    with _current_lock:
        if _current is None or _current.identity.pid != os.getpid():
            _current = ProcessHeartbeat()
        return _current
