"""How to pace calls so a whole cluster stays under a provider's rolling-window limit.

Dramatiq's ``BucketRateLimiter`` counts calls in fixed buckets of ``bucket_ms``. Any rolling window
of ``window`` seconds overlaps at most ``ceil(window / bucket) + 1`` buckets, so allowing ``per_bucket``
calls per bucket keeps every rolling window at or under the limit when
``(ceil(window / bucket) + 1) * per_bucket <= limit``. Small buckets waste little of the budget
(``window / (window + bucket)``), so we pick the pair that allows the highest steady rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    per_bucket: int
    bucket_ms: int

    @property
    def rate(self) -> float:
        """Steady calls per second this pacing allows."""
        return self.per_bucket * 1000.0 / self.bucket_ms

    def worst_window_count(self, window: float) -> int:
        """The most calls any rolling window of ``window`` seconds can see."""
        return (math.ceil(window * 1000 / self.bucket_ms) + 1) * self.per_bucket


def plan_pacing(limit: int, window: float, *, margin: float = 1.0, min_bucket_ms: int = 10) -> Pacing:
    """The fastest bucket pacing whose worst rolling window stays within ``limit * margin``.

    Args:
        limit: calls the provider allows per ``window`` seconds.
        window: the provider's window in seconds.
        margin: fraction of the limit to use (headroom for other callers of the same key).
        min_bucket_ms: smallest bucket, so the limiter does not spin on a shared store.

    Raises:
        ValueError: the window is not positive, or the budget is under 2 calls per window (a
            bucket limiter cannot promise a single call per rolling window).
    """
    budget = math.floor(limit * margin)
    if window <= 0 or budget < 2:
        raise ValueError(f"cannot pace {limit} calls per {window} s with margin {margin}: need at least 2 per window")
    window_ms = window * 1000
    best: Pacing | None = None
    for per_bucket in range(1, min(budget, 200) + 1):
        # smallest bucket b with (ceil(window_ms / b) + 1) * per_bucket <= budget
        max_buckets = budget // per_bucket - 1
        if max_buckets < 1:
            break
        bucket_ms = max(min_bucket_ms, math.ceil(window_ms / max_buckets))
        while (math.ceil(window_ms / bucket_ms) + 1) * per_bucket > budget:
            bucket_ms += 1
        candidate = Pacing(per_bucket, bucket_ms)
        if best is None or candidate.rate > best.rate:
            best = candidate
    assert best is not None  # per_bucket == 1 always fits when budget >= 2
    return best
