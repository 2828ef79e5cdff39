"""How close to the provider's rate limit does a 2-process Redis cluster get, without a single 429 failing a row?

Starts the loopback Clerk stand-in limited to R requests per second (a sliding 10 s window), two
Dramatiq worker processes on real Redis and PostgreSQL (from scripts/with-test-services.sh), imports
enough rows to take ~30 s, and prints achieved rows/s ÷ R. Goal: ≥ 0.9.

    scripts/with-test-services.sh .venv/bin/python bench/rate_limit.py [--rate 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import actors  # noqa: E402
from actors import runtime  # noqa: E402
from scholarise.config import Settings  # noqa: E402
from scholarise.db import session_scope, upgrade  # noqa: E402
from scholarise.models import BackgroundTask, TaskStatus  # noqa: E402
from tests.support import services  # noqa: E402
from tests.support.fake_clerk import FakeClerk  # noqa: E402
from tests.support.workers import start_worker, stop_worker, wait_until, worker_env  # noqa: E402

KEY = "sk_test_bench_rate_limit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="R: provider requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="roughly how long the import should take")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    args = parser.parse_args()
    redis_url, pg_url = services.redis_url(), services.postgres_url()
    if not (redis_url and pg_url):
        print("needs REDIS_TEST_URL and POSTGRES_TEST_URL: run under scripts/with-test-services.sh")
        return 1
    window = 10
    limit = int(args.rate * window)
    rows = int(args.rate * args.seconds)
    services.flush_redis(redis_url)
    with FakeClerk(KEY, rate_limit=limit, window=window) as clerk, \
            services.temporary_postgres_database(pg_url) as db_url, tempfile.TemporaryDirectory() as tmp:
        env = worker_env(REDIS_URL=redis_url, DATABASE_URL=db_url, CLERK_SECRET_KEY=KEY, CLERK_API_URL=clerk.url,
                         SCHOLARISE_PROVIDER_RATE_LIMIT=str(limit), SCHOLARISE_PROVIDER_RATE_WINDOW=str(window),
                         SCHOLARISE_INSTANCE_PATH=tmp)
        settings = Settings.from_env(env)
        upgrade(settings)
        actors.configure(settings)
        workers = [start_worker(env, threads=args.threads, log=Path(tmp) / f"w{i}.log") for i in range(2)]
        try:
            time.sleep(2)  # let both workers boot before the clock starts
            items = [{"first_name": f"B{i}", "last_name": "Bench", "email": f"b{i}@example.org"} for i in range(rows)]
            task_id = actors.create_bulk_task("BULK_USER_CREATION", "rate bench", "",
                                              {"type": "teacher", "branch": "Bench", "items": items})
            wait_until(lambda: actors.get_task(task_id)["status"] in TaskStatus.FINISHED, timeout=args.seconds * 6,
                       interval=0.5, what="the import")
        finally:
            for w in workers:
                stop_worker(w)
        with session_scope(runtime.current().session_factory) as session:
            task = session.get(BackgroundTask, task_id)
            elapsed = (task.finished_at - task.started_at).total_seconds()
            created, failed = task.created_count, task.failed_count
        stats = clerk.stats()
        runtime.set_runtime(None)
    achieved = created / elapsed
    print(f"rate limit R           : {args.rate:.1f} requests/s ({limit} per {window} s, sliding window)")
    print(f"rows                   : {rows} ({created} created, {failed} failed)")
    print(f"provider requests      : {stats['requests_total']} (429 answers: {stats['rate_limited']})")
    print(f"duplicates in provider : {sum(1 for n in stats['created_per_email'].values() if n > 1)}")
    print(f"elapsed                : {elapsed:.1f} s")
    print(f"achieved rows/s ÷ R    : {achieved:.2f} / {args.rate:.1f} = {achieved / args.rate:.3f}  (goal ≥ 0.9)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
