"""Pacing: no rolling window of the provider's length ever sees more calls than its limit."""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from scholarise.providers.pacing import plan_pacing


@given(limit=st.integers(min_value=2, max_value=5000), window=st.sampled_from([1.0, 10.0, 60.0]),
       margin=st.floats(min_value=0.5, max_value=1.0))
def test_the_worst_rolling_window_stays_within_the_budget(limit, window, margin):
    assume(math.floor(limit * margin) >= 2)
    pacing = plan_pacing(limit, window, margin=margin)
    assert pacing.worst_window_count(window) <= max(1, math.floor(limit * margin))


def test_clerk_limits_are_used_nearly_in_full():
    dev, prod = plan_pacing(100, 10, margin=0.95), plan_pacing(1000, 10, margin=0.95)
    assert dev.rate * 10 / 100 > 0.9
    assert prod.rate * 10 / 1000 > 0.9


def simulate(per_bucket: int, bucket_ms: int, seconds: float) -> list[float]:
    """Calls as a greedy cluster makes them: as many as each bucket allows, as early as possible."""
    calls = []
    t = 0
    while t < seconds * 1000:
        calls.extend([t / 1000] * per_bucket)
        t += bucket_ms
    return calls


@given(limit=st.integers(min_value=2, max_value=300))
def test_a_greedy_caller_never_exceeds_the_limit_in_any_window(limit):
    pacing = plan_pacing(limit, 1.0)
    calls = simulate(pacing.per_bucket, pacing.bucket_ms, 3.0)
    for i, start in enumerate(calls):
        in_window = sum(1 for c in calls[i:] if c < start + 1.0)
        assert in_window <= limit


def test_a_budget_under_two_calls_per_window_is_refused():
    import pytest

    with pytest.raises(ValueError, match="need at least 2 per window"):
        plan_pacing(1, 10)
