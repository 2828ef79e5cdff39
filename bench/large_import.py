"""A 100,000-row import in the embedded mode: peak RSS and progress writes per second per task.

Generates the CSV, imports it through the real path (CSV streaming -> task rows -> Dramatiq worker
threads -> the embedded provider -> SQLite), and prints the figures. Goals: peak RSS under 300 MB,
at most 1 progress write per second per task.

    .venv/bin/python bench/large_import.py [--rows 100000] [--batch-size 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

import actors  # noqa: E402
from actors import runtime  # noqa: E402
from actors.embedded import start_worker  # noqa: E402
from scholarise.config import Settings  # noqa: E402
from scholarise.csvfile import open_csv  # noqa: E402
from scholarise.db import upgrade  # noqa: E402
from scholarise.models import TaskStatus  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "last_name", "email", "phone", "subject", "employee_code", "date_of_joining"])
        for i in range(rows):
            writer.writerow([f"Name{i}", f"Surname{i}", f"person{i}@bench.example.org", "+1-555-000-0000",
                             "Mathematics", f"T{i:06d}", "2021-09-01"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_csv(path, args.rows)
        settings = Settings(instance_path=Path(tmp) / "instance", broker="embedded", batch_size=args.batch_size,
                            worker_threads=args.threads, max_rows=max(args.rows, 100_000),
                            max_upload_bytes=200 * 1024 * 1024, database_url=args.database_url)
        upgrade(settings)
        actors.configure(settings)
        progress_writes: list[float] = []

        def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            # progress writes only: the one final status write (which also stamps progress) is not one
            if statement.startswith("UPDATE background_tasks") and "progress_at" in statement \
                    and "status=" not in statement:
                progress_writes.append(time.monotonic())

        event.listen(runtime.current().engine, "before_cursor_execute", count)
        base = current_rss_mb()
        peak_sampled = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak_sampled.append(current_rss_mb())
                time.sleep(0.2)

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.monotonic()
        with open_csv(path, "teacher", max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows) as rows:
            task_id = actors.create_bulk_task("BULK_USER_CREATION", "bench", "", {"type": "teacher", "branch": "B"},
                                              rows=rows)
        t1 = time.monotonic()
        worker = start_worker()
        summary = actors.wait_for_task(task_id, poll=1.0)
        t2 = time.monotonic()
        worker.stop()
        stop.set()
    seconds = max(t2 - t1, 1e-9)
    per_second = [0] * (int(seconds) + 1)
    for t in progress_writes:
        if t >= t1:
            per_second[min(int(t - t1), len(per_second) - 1)] += 1
    print(f"rows                      : {args.rows} (batch size {args.batch_size}, {args.threads} worker threads, "
          f"{settings.database_url.split(':')[0]})")
    print(f"status                    : {summary['status']} ({summary['created']} created, {summary['failed']} failed)")
    print(f"validate + store rows     : {t1 - t0:.1f} s ({args.rows / (t1 - t0):.0f} rows/s)")
    print(f"process                   : {seconds:.1f} s ({args.rows / seconds:.0f} rows/s)")
    print(f"RSS at start / peak       : {base:.0f} MB / {max(peak_sampled):.0f} MB "
          f"(ru_maxrss {rss_mb():.0f} MB; goal < 300)")
    print(f"progress writes           : {len(progress_writes)} in {seconds:.0f} s = "
          f"{len(progress_writes) / seconds:.2f}/s; "
          f"busiest second {max(per_second)} (goal ≤ 1/s)")
    return 0 if summary["status"] == TaskStatus.COMPLETED else 1


if __name__ == "__main__":
    raise SystemExit(main())
