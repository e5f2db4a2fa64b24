"""Synthetic ledger figures that follow the 2021 facts (DESIGN.md), day by day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from takedown.model import Figures
from takedown.policy.evaluate import Step

DAY = timedelta(days=1)
FLAGGED = 6200  # "more than 5,900"; 563 left = 9.1% of 6,200
ONLINE_10_MARCH = 3168
OVERDUE_FROM = datetime(2021, 3, 10, tzinfo=UTC)
REMOVALS_START = datetime(2021, 3, 20, tzinfo=UTC)
MAY_16 = datetime(2021, 5, 16, tzinfo=UTC)
MAY_17 = datetime(2021, 5, 17, tzinfo=UTC)
ALL_GONE = datetime(2021, 5, 31, tzinfo=UTC)
NEW_ITEMS_FROM = datetime(2021, 6, 1, 9, tzinfo=UTC)  # five a day, removed within hours
NEW_PER_DAY = 5


def remaining_2021(
    now: datetime, online: int = ONLINE_10_MARCH, may16: int = 650, may17: int = 563
) -> int:
    """Items of the original backlog still online at ``now`` (midnight-aligned).

    Defaults: 650 left on 16 May (89.5% of 6,200 removed), 563 on 17 May (90.9%).
    """
    if now < REMOVALS_START:
        return online
    if now <= MAY_16:
        frac = (now - REMOVALS_START) / (MAY_16 - REMOVALS_START)
        return round(online - frac * (online - may16))
    if now <= ALL_GONE:
        frac = (now - MAY_17) / (ALL_GONE - MAY_17)
        return round(may17 * (1 - frac))
    return 0


def new_items_listed(now: datetime, since: datetime | None = None) -> int:
    """New items (after the backlog) listed by ``now`` (and after ``since``)."""

    def upto(t: datetime) -> int:
        if t < NEW_ITEMS_FROM:
            return 0
        return (t - NEW_ITEMS_FROM) // DAY + 1

    return upto(now) - (upto(since) if since else 0)


def figures_2021(now: datetime, platform: str = "twitter") -> tuple[Figures, dict[int, Figures]]:
    new = new_items_listed(now)
    flagged = FLAGGED + new
    remaining = remaining_2021(now)
    removed = flagged - remaining
    overdue = remaining if now >= OVERDUE_FROM else 0
    fig = Figures(
        platform=platform,
        as_of=now,
        flagged=flagged,
        removed=removed,
        remaining=remaining,
        overdue=overdue,
        removed_share=removed / flagged,
        on_time_share=0.3,
    )
    recent_new = new_items_listed(now, now - 7 * DAY)
    # a new item is due 24 h after it is listed; "on time" counts the due ones only
    due = new_items_listed(now - DAY, now - 7 * DAY - DAY)
    recent = Figures(
        platform=platform,
        as_of=now,
        flagged=recent_new,
        removed=recent_new,
        removed_share=1.0 if recent_new else None,
        on_time_share=1.0 if due else None,
    )
    return fig, {7: recent}


def steps_2021(
    start: datetime = datetime(2021, 3, 1, tzinfo=UTC),
    end: datetime = datetime(2021, 7, 1, tzinfo=UTC),
    step: timedelta = DAY,
) -> list[Step]:
    out = []
    now = start
    while now <= end:
        fig, recent = figures_2021(now)
        out.append(Step(now, fig, recent))
        now += step
    return out


def never_complying(days: int, start: datetime, platform: str = "stubborn") -> list[Step]:
    """A platform with 1,000 items overdue from ``start`` that never removes any."""
    out = []
    for d in range(days):
        now = start + d * DAY
        fig = Figures(
            platform=platform,
            as_of=now,
            flagged=1000,
            remaining=1000,
            overdue=1000,
            removed_share=0.0,
            on_time_share=0.0,
        )
        out.append(Step(now, fig, {7: Figures(platform=platform, as_of=now)}))
    return out
