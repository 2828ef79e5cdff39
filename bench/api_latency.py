"""p95 latency of the JSON API's task list and task detail with 10,000 tasks and 1,000,000 rows in PostgreSQL.

Fills a throw-away database on the server of scripts/with-test-services.sh with server-side
``INSERT ... SELECT generate_series`` (seconds, not minutes), then times N requests of each kind
through the Flask test client (the whole app: token check, query, serialisation), and prints the
EXPLAIN (ANALYZE) plan of every statement one list and one detail request run. Goal: p95 < 50 ms.

    scripts/with-test-services.sh .venv/bin/python bench/api_latency.py [--requests 500]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, text  # noqa: E402

from scholarise.api_tokens import create_token  # noqa: E402
from scholarise.config import Settings  # noqa: E402
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402
from scholarise.models import Branch  # noqa: E402
from tests.support import services  # noqa: E402

BRANCHES = 20
STATUSES = ("COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED", "PENDING",
            "RUNNING")

FILL = [
    # Tasks: spread over branches, statuses and the last ~7 days; 100 rows each.
    """INSERT INTO background_tasks (type, user_type, title, description, status, priority, branch_id, created_by,
           options, total, processed, created_count, existing_count, failed_count, progress, created_at,
           started_at, finished_at)
       SELECT 'BULK_USER_CREATION', (ARRAY['teacher','employee','student'])[1 + g % 3], 'Import ' || g, '',
              (ARRAY{statuses})[1 + g % {n_statuses}], 1 + g % 10, 1 + g % {branches}, 'bench', '{{}}'::jsonb,
              :per_task, :per_task, :per_task - 2, 1, 1, 100.0,
              now() - make_interval(secs => (:tasks - g) * 60), now() - make_interval(secs => (:tasks - g) * 60),
              now() - make_interval(secs => (:tasks - g) * 60 - 30)
       FROM generate_series(1, :tasks) AS g""",
    # Rows: per task, the first ones created, one existing, the last one failed.
    """INSERT INTO task_items (task_id, row_number, email, data, status, external_user_id, error_code,
           error_message, attempts, finished_at)
       SELECT t.id, r, 'p' || t.id || '.' || r || '@example.org',
              jsonb_build_object('first_name', 'First' || r, 'last_name', 'Last' || t.id,
                                 'email', 'p' || t.id || '.' || r || '@example.org'),
              CASE WHEN r = :per_task THEN 'failed' WHEN r = :per_task - 1 THEN 'existing' ELSE 'created' END,
              CASE WHEN r = :per_task THEN NULL ELSE 'sch_' || md5(t.id || '.' || r) END,
              CASE WHEN r = :per_task THEN 'invalid_row' END,
              CASE WHEN r = :per_task THEN 'email: Not a valid email address.' END,
              1, t.finished_at
       FROM background_tasks AS t CROSS JOIN generate_series(1, :per_task) AS r""",
]


def fill(settings: Settings, tasks: int, items: int) -> None:
    engine = make_engine(settings)
    started = time.perf_counter()
    with session_scope(make_session_factory(engine)) as session:
        session.add_all(Branch(name=f"Campus {i:02d}") for i in range(1, BRANCHES + 1))
        session.flush()
        params = {"tasks": tasks, "per_task": items // tasks}
        statuses = "[" + ",".join(f"'{s}'" for s in STATUSES) + "]"
        for sql in FILL:
            session.execute(text(sql.format(statuses=statuses, n_statuses=len(STATUSES), branches=BRANCHES)), params)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")  # statistics and the visibility map, as autovacuum would leave them
        counts = conn.exec_driver_sql("SELECT (SELECT count(*) FROM background_tasks), "
                                      "(SELECT count(*) FROM task_items)").one()
    engine.dispose()
    print(f"filled {counts[0]:,} tasks and {counts[1]:,} rows in {time.perf_counter() - started:.1f} s")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def timed(label: str, call: Callable[[], Any], n: int, warmup: int = 20) -> float:
    """Wall-clock p95 of ``n`` calls; CPU time of this process is shown too, since a busy machine
    (other processes on the same 2 cores) inflates wall time but not the work a request costs."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        assert response.status_code == 200, response.text
    p95 = percentile(wall, 95)
    print(f"{label:<46} n={n}  p50 {statistics.median(wall):6.2f} ms  p95 {p95:6.2f} ms  max {max(wall):6.2f} ms"
          f"  | CPU p50 {statistics.median(cpu):5.2f} ms  p95 {percentile(cpu, 95):5.2f} ms")
    return p95


def explain(engine: Any, label: str, call: Callable[[], Any]) -> None:
    """Run one request, then EXPLAIN ANALYZE every statement it sent (same SQL, same parameters)."""
    captured: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    print(f"\n=== {label}: {len(captured)} statements ===")
    with engine.connect() as conn:
        for statement, parameters in captured:
            print("\n" + " ".join(statement.split()))
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters).scalars()
            print("\n".join("    " + line for line in plan))
            conn.rollback()  # EXPLAIN ANALYZE of an UPDATE runs it: undo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per kind")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    base = services.postgres_url()
    if not base:
        print("needs POSTGRES_TEST_URL: run under scripts/with-test-services.sh")
        return 1
    rng = random.Random(args.seed)
    with services.temporary_postgres_database(base) as url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(instance_path=Path(tmp), database_url=url, broker="stub",
                            secret_key="bench-secret-key-0123")
        upgrade(settings)
        fill(settings, args.tasks, args.items)
        engine = make_engine(settings)
        with session_scope(make_session_factory(engine)) as session:
            admin = create_token(session, role="admin", name="bench").secret
            staff = create_token(session, role="staff", branch=session.get(Branch, 7), name="bench staff").secret
        engine.dispose()

        from admin import create_app
        from admin.extensions import db

        app = create_app(settings)
        client = app.test_client()
        as_admin, as_staff = {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {staff}"}
        lists = [
            ("/api/tasks", {"headers": as_admin}),
            ("/api/tasks?status=COMPLETED_WITH_ERRORS", {"headers": as_admin}),
            ("/api/tasks?branch_id=3&per_page=20", {"headers": as_admin}),
            ("/api/tasks?page=40", {"headers": as_admin}),
            ("/api/tasks", {"headers": as_staff}),
        ]

        def any_list() -> Any:
            path, kwargs = rng.choice(lists)
            return client.get(path, **kwargs)

        print(f"\n{args.requests} requests per line; the list mixes filters, pages and a staff token "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        results = {
            "list": timed("GET /api/tasks (mixed)", any_list, args.requests),
            "detail": timed("GET /api/tasks/{id} (random id, 100 rows each)",
                            lambda: client.get(f"/api/tasks/{rng.randint(1, args.tasks)}", headers=as_admin),
                            args.requests),
        }
        with app.app_context():
            app_engine = db.engine
        for path, kwargs in lists:
            explain(app_engine, f"GET {path} ({'staff' if kwargs['headers'] is as_staff else 'admin'} token)",
                    lambda p=path, k=kwargs: client.get(p, **k))
        explain(app_engine, "GET /api/tasks/5000", lambda: client.get("/api/tasks/5000", headers=as_admin))
        print("\n" + "  ".join(f"{k} p95 {v:.2f} ms" for k, v in results.items())
              + f"  (goal < 50 ms: {'met' if max(results.values()) < 50 else 'NOT met'})")
        return 0 if max(results.values()) < 50 else 2


if __name__ == "__main__":
    sys.exit(main())
