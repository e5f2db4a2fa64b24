"""Sans-IO token bucket: given ``now`` and a byte count, how much may go and when.

Rates are in bits per second, tokens in bytes. The bucket refills from the elapsed time
exactly (no ticks), so over a long transfer the achieved rate equals the configured one
whatever the chunk sizes; the burst caps what an idle flow may send at once.
"""

from __future__ import annotations

import math

MIN_BURST = 1500
BURST_SECONDS = 0.020
_EPSILON = 1e-6


def default_burst(rate_bps: float) -> int:
    """About 20 ms of the rate, at least one full-size segment."""
    if math.isinf(rate_bps):
        return MIN_BURST
    return max(MIN_BURST, math.ceil(rate_bps / 8 * BURST_SECONDS))


class TokenBucket:
    """A token bucket at ``rate_bps`` bits per second; ``math.inf`` means unlimited.

    A new bucket (and one whose rate changes from unlimited) holds 20 ms of the rate, so a
    fresh flow gets no head start beyond that even when the burst is larger.
    """

    def __init__(self, rate_bps: float, burst_bytes: int | None = None, now: float = 0.0) -> None:
        _check_rate(rate_bps)
        if burst_bytes is not None and burst_bytes < 1:
            raise ValueError(f"burst must be at least 1 byte, not {burst_bytes}")
        self._rate = float(rate_bps)
        self._fixed_burst = burst_bytes
        self._burst = burst_bytes if burst_bytes is not None else default_burst(rate_bps)
        self._tokens = self._start_tokens()
        self._last = now

    @property
    def rate_bps(self) -> float:
        return self._rate

    @property
    def burst_bytes(self) -> int:
        return self._burst

    def tokens(self, now: float) -> float:
        """Bytes that could be sent at ``now`` (refills as a side effect)."""
        self._refill(now)
        return self._tokens

    def take(self, now: float, nbytes: int) -> int:
        """How many of ``nbytes`` may be sent now; those are consumed."""
        if nbytes <= 0:
            return 0
        if math.isinf(self._rate):
            self._last = max(self._last, now)
            return nbytes
        self._refill(now)
        # The epsilon absorbs float rounding, so waiting exactly delay() always suffices.
        allowed = min(nbytes, int(self._tokens + _EPSILON))
        self._tokens -= allowed
        return allowed

    @property
    def quantum_bytes(self) -> int:
        """The most ``delay`` waits for: half a burst, so a late wake-up loses no tokens."""
        return max(1, self._burst // 2)

    def delay(self, now: float, nbytes: int) -> float:
        """Seconds from ``now`` until ``nbytes`` could be sent; 0 if now.

        Requests above ``quantum_bytes`` wait for a quantum only: a sender that sleeps
        exactly this long and then sends what ``take`` allows keeps the rate even when it
        wakes up late (by up to half a burst, 10 ms at the default burst).
        """
        if nbytes <= 0 or math.isinf(self._rate):
            return 0.0
        self._refill(now)
        missing = min(nbytes, self.quantum_bytes) - self._tokens
        if missing <= 0:
            return 0.0
        return missing * 8.0 / self._rate

    def set_rate(self, rate_bps: float, now: float) -> None:
        """Change the rate at ``now``: time before ``now`` is accounted at the old rate."""
        _check_rate(rate_bps)
        was_unlimited = math.isinf(self._rate)
        self._refill(now)
        self._rate = float(rate_bps)
        if self._fixed_burst is None:
            self._burst = default_burst(rate_bps)
        self._tokens = self._start_tokens() if was_unlimited else min(self._tokens, self._burst)

    def _start_tokens(self) -> float:
        if math.isinf(self._rate):
            return float(self._burst)
        return float(min(self._burst, self._rate / 8 * BURST_SECONDS))

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed <= 0:
            return  # a clock that stands still or steps back adds nothing
        self._last = now
        if not math.isinf(self._rate):
            self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate / 8.0)


def _check_rate(rate_bps: float) -> None:
    if not rate_bps > 0:
        raise ValueError(f"rate must be positive bits per second, not {rate_bps}")
