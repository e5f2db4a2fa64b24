"""Whether an enforcement point may keep enforcing what it has: the feed loop's sans-IO core.

The point enforces the last directive set it applied. A new set that cannot be applied
(refused by the feed, by validation, by memory, by a bug) changes nothing: the last good
set stays in force until the expiry the feed promised when it was applied, and then the
point fails open, loudly. A point that has never applied a set although the feed has one
fails open at once, so "enforcing nothing" is never reported as "fail_open 0".

``FeedGuard`` holds that state and answers with plain values; ``feed_loop`` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FailOpen:
    """The guard's answer: fail open or not, and why (for the log and the metrics)."""

    on: bool
    reason: str


@dataclass
class FeedGuard:
    """The feed loop's memory: what was applied, until when, and which causes were logged."""

    applied_sequence: int | None = None
    good_until: datetime | None = None  # the feed's promise when the set in force was applied
    failing: bool = False  # the newest set could not be applied
    _logged: set[tuple[str, str]] = field(default_factory=set)

    def rejected(self, reason: str, message: str, *, set_refused: bool = False) -> bool:
        """An update failed; True the first time this cause is seen (log it at ERROR then,
        and only then). ``set_refused``: the feed delivered a set this point cannot apply,
        so the set in force is outdated (a failed fetch is the feed's staleness instead)."""
        if set_refused:
            self.failing = True
        cause = (reason, message)
        if cause in self._logged:
            return False
        self._logged.add(cause)
        return True

    def applied(self, sequence: int, expires: datetime | None) -> None:
        """A set is in force; the next failure is news again."""
        self.applied_sequence = sequence
        self.good_until = expires
        self.failing = False
        self._logged.clear()

    def confirmed(self, expires: datetime | None) -> None:
        """The feed answered and vouches for the set in force until ``expires`` (a renewed
        timestamp); ignored while a newer set is being refused."""
        if not self.failing and self.applied_sequence is not None:
            self.good_until = expires

    def fail_open(
        self,
        now: datetime,
        *,
        source_stale: bool,
        source_has_set: bool,
        source_expires: datetime | None = None,
    ) -> FailOpen:
        """Whether to stop enforcing at ``now``."""
        if self.applied_sequence is None:
            if source_has_set:
                return FailOpen(True, "no directive set could be applied")
            if source_stale:
                return FailOpen(True, f"feed stale: timestamp expired at {source_expires}")
            return FailOpen(False, "no directive set published yet")
        if self.failing and self.good_until is not None and now >= self.good_until:
            # the set in force is no longer what the feed says: good only until its promise
            return FailOpen(
                True,
                f"set {self.applied_sequence} expired at {self.good_until.isoformat()} "
                "and no newer set could be applied",
            )
        if source_stale:
            return FailOpen(True, f"feed stale: timestamp expired at {source_expires}")
        if self.failing:
            return FailOpen(False, f"keeping set {self.applied_sequence}: newer set refused")
        return FailOpen(False, "feed fresh")
