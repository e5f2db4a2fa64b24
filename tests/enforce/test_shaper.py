"""The token bucket on simulated time: precision, burst bound, delay, live rate changes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.enforce.shaper import MIN_BURST, TokenBucket, default_burst


def simulate(
    bucket: TokenBucket,
    seconds: float,
    chunk_sizes: list[int],
    *,
    jitter: float = 0.0,
    seed: int = 0,
    start: float = 0.0,
) -> int:
    """A sender that always has data, written by the application in the given chunk sizes.

    At each wake-up it sends what the bucket allows, then sleeps for ``delay`` (plus up to
    ``jitter`` seconds of scheduling lateness). Returns the bytes sent in [start, start+T].
    """
    rnd = random.Random(seed)
    now, end, sent, i = start, start + seconds, 0, 0
    remaining = chunk_sizes[0]
    while now <= end:
        got = bucket.take(now, remaining)
        sent += got
        remaining -= got
        if remaining == 0:
            i += 1
            remaining = chunk_sizes[i % len(chunk_sizes)]
            continue
        now += bucket.delay(now, remaining) + rnd.random() * jitter
    return sent


RATES = [128_000, 1_000_000, 10_000_000]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("chunks", [[100], [1448], [2011], [65536], [7, 300, 16384, 90000, 1500]])
def test_ten_second_precision(rate: int, chunks: list[int]) -> None:
    bucket = TokenBucket(rate, now=0.0)
    sent = simulate(bucket, 10.0, chunks)
    ratio = sent * 8 / 10.0 / rate
    assert abs(ratio - 1) < 0.005, ratio


@pytest.mark.parametrize("rate", RATES)
def test_precision_with_late_wakeups(rate: int) -> None:
    # An event loop wakes up to 5 ms late; half the burst (>= 10 ms of rate) absorbs it.
    rnd = random.Random(rate)
    chunks = [rnd.randint(1, 100_000) for _ in range(1000)]
    sent = simulate(TokenBucket(rate, now=5.0), 10.0, chunks, jitter=0.005, seed=rate, start=5.0)
    assert abs(sent * 8 / 10.0 / rate - 1) < 0.005


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(RATES),
    st.lists(st.integers(500, 200_000), min_size=1, max_size=30),
)
def test_precision_any_chunk_sizes(rate: int, chunks: list[int]) -> None:
    sent = simulate(TokenBucket(rate), 10.0, chunks)
    assert abs(sent * 8 / 10.0 / rate - 1) < 0.005


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([8_000, *RATES]),
    st.lists(st.tuples(st.floats(0, 0.5), st.integers(0, 100_000)), min_size=1, max_size=40),
)
def test_never_more_than_burst_plus_rate_in_any_window(
    rate: int, ops: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate)
    now, log = 0.0, []
    for dt, n in ops:
        now += dt
        got = bucket.take(now, n)
        assert 0 <= got <= n
        log.append((now, got))
    for i, (t1, _) in enumerate(log):
        total = 0
        for t2, got in log[i:]:
            total += got
            assert total <= bucket.burst_bytes + rate / 8 * (t2 - t1) + 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(RATES), st.floats(0, 3), st.integers(1, 30_000), st.integers(0, 30_000))
def test_delay_is_exactly_long_enough(rate: int, start: float, drain: int, n: int) -> None:
    bucket = TokenBucket(rate, now=start)
    bucket.take(start, drain)
    want = min(n, bucket.quantum_bytes)
    d = bucket.delay(start, n)
    assert d >= 0
    if d > 0:
        probe = TokenBucket(rate, now=start)
        probe.take(start, drain)
        assert probe.take(start + d * 0.99, want) < want
    assert bucket.take(start + d, want) == want


def test_default_burst() -> None:
    assert default_burst(128_000) == MIN_BURST == 1500
    assert default_burst(10_000_000) == 25_000  # 20 ms of 1.25 MB/s
    assert TokenBucket(10_000_000).burst_bytes == 25_000
    assert TokenBucket(128_000, burst_bytes=4000).burst_bytes == 4000


def test_new_bucket_holds_20ms_not_a_full_burst() -> None:
    bucket = TokenBucket(128_000, burst_bytes=65536, now=1.0)
    assert bucket.take(1.0, 10**6) == 320  # 20 ms at 16,000 B/s


def test_idle_refill_caps_at_burst() -> None:
    bucket = TokenBucket(1_000_000, now=0.0)
    bucket.take(0.0, 10**6)
    assert bucket.take(100.0, 10**6) == bucket.burst_bytes


def test_clock_stepping_back_adds_nothing() -> None:
    bucket = TokenBucket(128_000, now=10.0)
    bucket.take(10.0, 10**6)
    assert bucket.take(5.0, 10**6) == 0
    assert bucket.take(10.0, 10**6) == 0
    assert bucket.take(10.05, 10**6) == 800


def test_live_rate_change_keeps_accounting() -> None:
    bucket = TokenBucket(128_000)
    first = simulate(bucket, 5.0, [1448])
    bucket.set_rate(1_000_000, 5.0)
    second = simulate(bucket, 5.0, [1448], start=5.0)
    assert abs(first / (5 * 16_000) - 1) < 0.005
    assert abs(second / (5 * 125_000) - 1) < 0.005
    assert bucket.burst_bytes == default_burst(1_000_000)


def test_time_before_a_change_is_accounted_at_the_old_rate() -> None:
    bucket = TokenBucket(8_000, burst_bytes=10_000, now=0.0)
    bucket.take(0.0, 10**6)
    bucket.set_rate(800_000, 1.0)  # one second at 1,000 B/s accrued before the change
    assert bucket.take(1.0, 10**6) == 1000


def test_lift_and_reimpose() -> None:
    bucket = TokenBucket(128_000)
    bucket.take(0.0, 10**6)
    bucket.set_rate(math.inf, 1.0)
    assert bucket.take(1.0, 10**9) == 10**9
    assert bucket.delay(1.0, 10**9) == 0
    bucket.set_rate(128_000, 2.0)
    assert bucket.take(2.0, 10**6) == 320  # back to a fresh bucket's 20 ms, not a burst
    assert bucket.delay(2.0, 400) == pytest.approx(0.025)


@pytest.mark.parametrize("bad", [0, -1, math.nan])
def test_bad_rates_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(bad)
    with pytest.raises(ValueError):
        TokenBucket(128_000).set_rate(bad, 0.0)


def test_zero_and_negative_requests() -> None:
    bucket = TokenBucket(128_000)
    assert bucket.take(0.0, 0) == 0
    assert bucket.take(0.0, -5) == 0
    assert bucket.delay(0.0, 0) == 0
