"""Deadlines: when an item or a notice must be dealt with, from the jurisdiction profile."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from takedown.config import Profile
from takedown.errors import InputError


def item_deadline(profile: Profile, category: str, issued_at: datetime) -> datetime:
    """The deadline of one item in a notice issued at ``issued_at``."""
    return issued_at + profile.deadline_for(category)


def notice_deadline(profile: Profile, categories: Iterable[str], issued_at: datetime) -> datetime:
    """A notice's deadline: the earliest deadline of its items' categories."""
    spans = [profile.deadline_for(c) for c in set(categories)]
    if not spans:
        raise InputError("a notice needs at least one item")
    return issued_at + min(spans)


def is_overdue(deadline_at: datetime | None, now: datetime) -> bool:
    """An open item is overdue once its deadline has passed."""
    return deadline_at is not None and now >= deadline_at


def time_left(deadline_at: datetime, now: datetime) -> timedelta:
    """Time until the deadline (negative once past)."""
    return deadline_at - now
