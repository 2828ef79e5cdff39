"""Run real Dramatiq worker processes (``python -m dramatiq actors.worker``) for multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker_env(**values: str) -> dict[str, str]:
    """The test process's environment plus ``values``, without settings that would leak in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHOLARISE_", "CLERK_", "REDIS_URL",
                                                                      "DATABASE_URL", "MAIL_"))}
    env.update(values)
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_worker(env: Mapping[str, str], *, threads: int = 4, log: Path | None = None,
                 queues: tuple[str, ...] = ("imports",)) -> subprocess.Popen[bytes]:
    """One Dramatiq worker process (``--processes 1``) so a test can kill exactly it."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "actors.worker", "--processes", "1", "--threads", str(threads),
         "--queues", *queues],
        cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the worker's whole process group (Dramatiq forks) and wait for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
