"""Run every benchmark in turn and print their figures (``make bench``).

Needs the throw-away Redis and PostgreSQL of ``scripts/with-test-services.sh`` (the Makefile
provides them). Each bench is its own process, so one's memory does not count against another's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("provider rate limit, 2 worker processes on Redis", ["rate_limit.py"]),
    ("100,000-row import, embedded mode", ["large_import.py", "--rows", "100000", "--batch-size", "50"]),
    ("JSON API latency, 10,000 tasks / 1,000,000 rows on PostgreSQL", ["api_latency.py"]),
]


def main() -> int:
    failed = 0
    for title, args in BENCHES:
        print(f"\n== {title} ==", flush=True)
        result = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE.parent, check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
