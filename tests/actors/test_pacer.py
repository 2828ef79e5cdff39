"""The pacer built on Dramatiq's BucketRateLimiter, with real threads competing for it."""

from __future__ import annotations

import threading
import time

from actors.broker import build_pacer
from scholarise.config import Settings


def test_competing_threads_stay_within_the_limit_in_every_rolling_window(tmp_path):
    settings = Settings(instance_path=tmp_path, broker="stub", clerk_secret_key="sk_test_x",
                        provider_rate_limit=20, provider_rate_window=1.0, provider_rate_margin=1.0)
    pace = build_pacer(settings)
    calls: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 2.5

    def caller() -> None:
        while time.monotonic() < deadline:
            pace()
            with lock:
                calls.append(time.time())

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls.sort()
    busiest = max(sum(1 for c in calls[i:] if c < start + 1.0) for i, start in enumerate(calls))
    assert busiest <= 20
    assert len(calls) >= 20  # it does let calls through


def test_the_embedded_provider_is_not_paced(tmp_path):
    pace = build_pacer(Settings(instance_path=tmp_path, broker="stub"))
    for _ in range(1000):
        pace()
