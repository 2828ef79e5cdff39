"""Keep Dramatiq running: restart it when one of its worker processes dies.

When a Dramatiq worker process dies (SIGKILL, the OOM killer, a segfault), Dramatiq's main process
stops the others and exits with an error — by design (Dramatiq issue #505: "use a supervisor").
Under a platform that restarts processes that is enough; under ``honcho start`` it stopped the
whole deployment. ``scholarise worker`` (the Procfile's ``worker``) therefore runs Dramatiq under
this small supervisor: an exit it did not ask for is followed by a restart after a short backoff;
SIGTERM or SIGINT is passed on once and ends the loop, so a clean stop stays a clean stop.

The work itself never depended on this: rows the dead process held are handed back by recovery
after the heartbeat timeout, and every row is still created once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a run that lasted this long resets the backoff


def supervise(argv: Sequence[str], *, max_restarts: int | None = None) -> int:
    """Run ``argv`` until it is asked to stop; restart it whenever it exits on its own with an error.

    Returns:
        The exit code of the last run (0 after a requested, clean stop).
    """
    child: subprocess.Popen[bytes] | None = None
    stop = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            return  # the process group's copy of the same stop: Dramatiq already has it
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)  # Dramatiq's workers ignore the duplicate a group-wide signal causes

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    backoff, restarts = MIN_BACKOFF, 0
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(argv))
            code = child.wait()
            if stop.is_set() or code == 0:
                return code
            if max_restarts is not None and restarts >= max_restarts:
                return code
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = MIN_BACKOFF
            logger.error("Dramatiq exited with code %s (a worker process died); restarting it in %.0f s. "
                         "Rows it held are handed back by recovery.", code, backoff)
            if stop.wait(backoff):  # a stop during the backoff ends it at once
                return code
            backoff, restarts = min(MAX_BACKOFF, backoff * 2), restarts + 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
