"""A small deployment for self-healing tests: Dramatiq worker processes, clock processes, web servers, and a
restartable Redis, all started as real processes (own session each) and always stopped at the end."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.workers import ROOT, wait_until

__all__ = ["Cluster", "children", "free_port", "restart_redis", "wait_until", "write_people_csv"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def write_people_csv(path: Path, n: int, *, prefix: str = "p") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["first_name", "last_name", "email"])
        for i in range(n):
            writer.writerow([f"First{i}", f"Last{i}", f"{prefix}{i}@example.org"])
    return path


class Cluster:
    """Processes of one test deployment; ``stop_all`` ends every one of them (group-wide, then SIGKILL)."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env = dict(env)
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(argv, cwd=ROOT, env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, *, threads: int = 2, shutdown_timeout_ms: int = 10_000) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "dramatiq", "actors.worker", "--processes", "1", "--threads",
                                 str(threads), "--worker-shutdown-timeout", str(shutdown_timeout_ms)])

    def clock(self, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "actors.clock"])

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def worker_child(self, name: str, timeout: float = 30) -> int:
        """The pid of the Dramatiq worker process (the one that claims rows) under worker ``name``."""
        found: list[int] = []

        def forked() -> bool:
            found[:] = [p for p in children(self.procs[name].pid) if _cmdline(p).startswith(sys.executable)]
            return bool(found)

        wait_until(forked, timeout=timeout, what=f"{name}'s worker process")
        return found[0]

    def owner_of(self, pid: int) -> str | None:
        """The name of the started process whose tree holds ``pid``."""
        for name, proc in self.procs.items():
            if pid == proc.pid or pid in children(proc.pid):
                return name
        return None

    def signal_group(self, name: str, sig: int) -> None:
        try:
            os.killpg(self.procs[name].pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, name: str, timeout: float = 20) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            self.signal_group(name, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(name, signal.SIGKILL)
                proc.wait(10)
        self.signal_group(name, signal.SIGKILL)  # stragglers of the group (a forked worker process)
        return proc.returncode

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.signal_group(name, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self.signal_group(name, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(10)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def restart_redis(url: str, *, down_for: float, during: Callable[[], None] | None = None) -> None:
    """Stop the test redis-server (``SHUTDOWN NOSAVE``: everything queued is lost) and start it on the same port.

    Uses the run directory of ``scripts/test-services.sh`` so its clean-up still stops the new server.
    """
    import redis

    run_dir = os.environ["SCHOLARISE_TEST_SERVICES_DIR"]
    server = os.environ["REDIS_SERVER_BIN"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it goes: that is the success case
    wait_until(lambda: not _answers(url), timeout=10, what="redis to stop")
    if during is not None:
        during()
    time.sleep(down_for)
    subprocess.run([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--dir", run_dir, "--pidfile", f"{run_dir}/redis.pid",
                    "--logfile", f"{run_dir}/redis.log"], check=True)
    wait_until(lambda: _answers(url), timeout=10, what="redis to start again")


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
