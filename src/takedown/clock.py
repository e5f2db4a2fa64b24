"""Time: every decision reads ``now`` from a Clock, never the wall clock directly."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock:
    """A simulated clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = as_utc(when)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


class FileClock:
    """A simulated clock shared between processes through a file holding an ISO time.

    A scenario driver writes the file (``FileClock.write``); services started with
    ``TAKEDOWN_CLOCK=file:PATH`` read it. The file is re-read at most every few ms.
    """

    def __init__(self, path: str | Path, *, cache_s: float = 0.005) -> None:
        self.path = Path(path)
        self._cache_s = cache_s
        self._read_at = -1.0
        self._value = datetime.fromtimestamp(0, UTC)

    def now(self) -> datetime:
        mono = time.monotonic()
        if mono - self._read_at > self._cache_s:
            text = self.path.read_text(encoding="ascii").strip()
            self._value = parse_time(text)
            self._read_at = mono
        return self._value

    def write(self, when: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(as_utc(when).isoformat(), encoding="ascii")
        os.replace(tmp, self.path)
        self._read_at = -1.0


def as_utc(when: datetime) -> datetime:
    """Return ``when`` as an aware UTC datetime; naive values are taken as UTC."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time; a bare date is midnight UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return as_utc(datetime.fromisoformat(value))


def clock_from_env(default: Clock | None = None) -> Clock:
    """The clock named by ``TAKEDOWN_CLOCK`` (``file:PATH``), else the system clock."""
    spec = os.environ.get("TAKEDOWN_CLOCK", "")
    if spec.startswith("file:"):
        return FileClock(spec[5:])
    return default or SystemClock()
