"""Initialise the background services about one second after a web process starts — once per process.

Why a delay: the server (gunicorn worker, Flask dev server, waitress) should be up and serving
before workers and the scheduler start competing for the CPU, and an app that is only imported
(by a CLI command, a test, a reloader's watcher process) should not start anything: the timer can
check that this process is really the one that serves (``should_start``) just before it fires.

Safe under several gunicorn workers (each worker process initialises itself; the embedded
scheduler's file lock lets one of them run it) and under the Flask reloader (the watcher process
is told apart by the caller's ``should_start``; see ``admin/wsgi.py``). A fork resets the state,
since threads do not survive it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from scholarise.config import Settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_scheduled: dict[int, threading.Timer] = {}  # pid -> the timer scheduled in that process
_results: dict[int, dict[str, Any]] = {}


def schedule_startup(settings: Settings | None = None, *, delay: float | None = None,
                     should_start: Callable[[], bool] | None = None) -> bool:
    """Initialise services ``delay`` seconds from now (default ``settings.startup_delay``), once per process.

    Args:
        settings: the settings to run with (default: from the environment when the timer fires).
        delay: seconds to wait; 0 initialises on the calling thread right away.
        should_start: asked when the timer fires; returning False skips this process for good
            (e.g. the Flask reloader's watcher, which never serves).

    Returns:
        True if this call scheduled the start, False if this process had already scheduled it.
    """
    pid = os.getpid()
    with _lock:
        if pid in _scheduled:
            return False
        wait = delay if delay is not None else (settings.startup_delay if settings else 1.0)
        timer = threading.Timer(wait, _start, args=(pid, settings, should_start))
        timer.daemon = True
        timer.name = "scholarise-startup"
        _scheduled[pid] = timer
    if wait <= 0:
        timer.run()  # no thread: the caller asked for it now
    else:
        timer.start()
    return True


def _start(pid: int, settings: Settings | None, should_start: Callable[[], bool] | None) -> None:
    if pid != os.getpid():  # scheduled in a parent that forked before the timer fired
        return
    if should_start is not None and not should_start():
        logger.info("services not started in process %s: it does not serve requests", pid)
        _results[pid] = {"initialized": False, "skipped": True}
        return
    from actors import services

    try:
        _results[pid] = services.initialize(settings=settings)
    except Exception:  # noqa: BLE001 - keep serving; /api/init or `scholarise restart` can try again
        logger.exception("background services could not be initialised in process %s", pid)


def startup_result() -> dict[str, Any] | None:
    """What the startup of this process did (None while it is still pending or never scheduled)."""
    return _results.get(os.getpid())


def wait_for_startup(timeout: float = 10.0) -> dict[str, Any] | None:
    """Block until this process's scheduled start has run (tests and ``serve`` use it)."""
    timer = _scheduled.get(os.getpid())
    if timer is not None and timer.is_alive():
        timer.join(timeout)
    return startup_result()
