"""The compliance figures: pure, over plain rows (``LedgerFacts``) and an explicit ``now``.

Sans-IO: nothing here reads the database or the clock. ``queries.load_facts`` builds the
snapshot; ``projection`` keeps the same state machine (``on_response`` / ``on_check``) in
the ``items`` table for the fast path.

Item state as of ``now``:
- a platform answer ``removed`` / ``restricted`` turns an open item into ``claimed``;
- an in-country check that finds it ``removed`` / ``restricted`` makes it so (verified);
- an in-country check that finds it ``available`` puts a claimed, removed or restricted
  item back to ``open`` (its deadline unchanged) and counts a reopening;
- checks from abroad, ``unreachable`` and ``error`` verdicts change nothing;
- an item leaves the figures from its ``delisted_at``.

Overdue: an item is overdue when its deadline (from its first notice) has passed and it is
``open``, or ``claimed`` with the claim made after the deadline. A claim made in time is
given the benefit of the doubt until a check says otherwise (the check puts it back to
``open``, and then it is overdue).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from takedown.model import Figures, ItemState, ResponseAction, Verdict

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
ALL = "all"


# ---------------------------------------------------------------- facts (plain rows)


@dataclass(frozen=True, slots=True)
class ItemFact:
    id: int
    platform: str | None
    category: str
    listed_at: datetime
    delisted_at: datetime | None = None
    noticed_at: datetime | None = None  # issued_at of the item's first notice
    deadline_at: datetime | None = None  # that notice's deadline (never moved afterwards)


@dataclass(frozen=True, slots=True)
class ResponseFact:
    item_id: int
    action: str  # ResponseAction value
    at: datetime


@dataclass(frozen=True, slots=True)
class CheckFact:
    item_id: int
    verdict: str  # Verdict value
    at: datetime
    in_country: bool = True


@dataclass
class LedgerFacts:
    """A snapshot of the facts the ledger reads."""

    items: list[ItemFact] = field(default_factory=list)
    responses: list[ResponseFact] = field(default_factory=list)
    checks: list[CheckFact] = field(default_factory=list)


# ---------------------------------------------------------------- the state machine


@dataclass(frozen=True, slots=True)
class ItemStatus:
    state: ItemState = ItemState.OPEN
    state_at: datetime | None = None
    verified_at: datetime | None = None  # first in-country verified removal / withholding
    reopened: int = 0


_CLAIMS = {ResponseAction.REMOVED.value, ResponseAction.RESTRICTED.value}


def on_response(st: ItemStatus, action: str, at: datetime) -> ItemStatus:
    """A platform's answer: a claim of removal turns an open item into ``claimed``."""
    if action in _CLAIMS and st.state == ItemState.OPEN:
        return replace(st, state=ItemState.CLAIMED, state_at=at)
    return st


def on_check(st: ItemStatus, verdict: str, at: datetime, in_country: bool) -> ItemStatus:
    """A check's verdict; only in-country checks decide the state."""
    if not in_country or st.state == ItemState.DELISTED:
        return st
    if verdict in (Verdict.REMOVED.value, Verdict.RESTRICTED.value):
        new = ItemState(verdict)
        verified = st.verified_at or at
        if st.state == new:
            return st if st.verified_at else replace(st, verified_at=verified)
        return replace(st, state=new, state_at=at, verified_at=verified)
    if verdict == Verdict.AVAILABLE.value and st.state in (
        ItemState.CLAIMED,
        ItemState.REMOVED,
        ItemState.RESTRICTED,
    ):
        return replace(st, state=ItemState.OPEN, state_at=at, reopened=st.reopened + 1)
    return st


def ttr_seconds(noticed_at: datetime | None, verified_at: datetime | None) -> float | None:
    """Seconds from the first notice to the first verified removal (None if not both)."""
    if noticed_at is None or verified_at is None or verified_at < noticed_at:
        return None
    return (verified_at - noticed_at).total_seconds()


def is_overdue(st: ItemStatus, deadline_at: datetime | None, now: datetime) -> bool:
    """Past its deadline while open, or claimed only after the deadline."""
    if deadline_at is None or deadline_at > now:
        return False
    if st.state == ItemState.OPEN:
        return True
    return st.state == ItemState.CLAIMED and st.state_at is not None and st.state_at > deadline_at


def quantile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank quantile (the same rule the SQL path uses)."""
    n = len(sorted_values)
    if n == 0:
        return None
    return sorted_values[max(0, math.ceil(p * n) - 1)]


# ---------------------------------------------------------------- replay


@dataclass
class _Timeline:
    times: list[datetime]
    events: list[tuple[int, str, bool]]  # (0 response / 1 check, value, in_country)


class LedgerIndex:
    """Facts grouped per item and sorted in time, for many ``figures_at`` calls."""

    def __init__(self, facts: LedgerFacts) -> None:
        self.items = facts.items
        raw: dict[int, list[tuple[datetime, int, int, str, bool]]] = defaultdict(list)
        for n, r in enumerate(facts.responses):
            raw[r.item_id].append((r.at, 0, n, r.action, True))
        for n, c in enumerate(facts.checks):
            raw[c.item_id].append((c.at, 1, n, c.verdict, c.in_country))
        self.timelines: dict[int, _Timeline] = {}
        for item_id, evs in raw.items():
            evs.sort(key=lambda e: (e[0], e[1], e[2]))
            self.timelines[item_id] = _Timeline(
                [e[0] for e in evs], [(e[1], e[3], e[4]) for e in evs]
            )

    def status(self, item: ItemFact, now: datetime) -> ItemStatus:
        """The item's state as of ``now`` (replaying its facts up to and including now)."""
        st = ItemStatus(ItemState.OPEN, item.listed_at)
        tl = self.timelines.get(item.id)
        if tl is None:
            return st
        for (kind, value, in_country), at in zip(
            tl.events[: bisect_right(tl.times, now)], tl.times, strict=False
        ):
            st = on_response(st, value, at) if kind == 0 else on_check(st, value, at, in_country)
        return st

    def figures(self, platform: str | None, now: datetime, category: str | None = None) -> Figures:
        items = [
            i
            for i in self.items
            if (platform is None or i.platform == platform)
            and (category is None or i.category == category)
            and i.listed_at <= now
            and (i.delisted_at is None or i.delisted_at > now)
        ]
        counts = {s: 0 for s in ItemState}
        overdue = due = on_time = 0
        ttrs: list[float] = []
        for item in items:
            st = self.status(item, now)
            counts[st.state] += 1
            noticed = item.noticed_at if item.noticed_at and item.noticed_at <= now else None
            deadline = item.deadline_at if noticed else None
            if is_overdue(st, deadline, now):
                overdue += 1
            if deadline is not None and deadline <= now:
                due += 1
                if st.verified_at is not None and st.verified_at <= deadline:
                    on_time += 1
            ttr = ttr_seconds(noticed, st.verified_at)
            if ttr is not None:
                ttrs.append(ttr)
        return make_figures(
            platform or ALL,
            now,
            flagged=len(items),
            removed=counts[ItemState.REMOVED],
            restricted=counts[ItemState.RESTRICTED],
            claimed=counts[ItemState.CLAIMED],
            overdue=overdue,
            due=due,
            on_time=on_time,
            ttrs_sorted=sorted(ttrs),
            category=category,
        )

    def reopened(self, platform: str | None, now: datetime) -> int:
        """How many times items of ``platform`` went back to open after a claim or removal."""
        return sum(
            self.status(i, now).reopened
            for i in self.items
            if (platform is None or i.platform == platform) and i.listed_at <= now
        )


def make_figures(
    platform: str,
    now: datetime,
    *,
    flagged: int,
    removed: int,
    restricted: int,
    claimed: int,
    overdue: int,
    due: int,
    on_time: int,
    ttrs_sorted: Sequence[float] | None = None,
    ttr_median_s: float | None = None,
    ttr_p90_s: float | None = None,
    category: str | None = None,
) -> Figures:
    """Figures from raw counts; shares are derived here and only here."""
    if ttrs_sorted is not None:
        ttr_median_s, ttr_p90_s = quantile(ttrs_sorted, 0.5), quantile(ttrs_sorted, 0.9)
    return Figures(
        platform=platform,
        as_of=now,
        flagged=flagged,
        removed=removed,
        restricted=restricted,
        claimed=claimed,
        remaining=flagged - removed - restricted,
        overdue=overdue,
        removed_share=(removed + restricted) / flagged if flagged else None,
        on_time_share=on_time / due if due else None,
        ttr_median_h=None if ttr_median_s is None else ttr_median_s / 3600.0,
        ttr_p90_h=None if ttr_p90_s is None else ttr_p90_s / 3600.0,
        category=category,
    )


def figures_at(
    facts: LedgerFacts, platform: str | None, now: datetime, *, category: str | None = None
) -> Figures:
    """The figures of ``platform`` (None: all platforms) as of ``now``."""
    return LedgerIndex(facts).figures(platform, now, category)


def figures_by_category(facts: LedgerFacts, platform: str | None, now: datetime) -> list[Figures]:
    """One Figures per category present among the platform's items, sorted by category."""
    index = LedgerIndex(facts)
    cats = sorted({i.category for i in facts.items if platform is None or i.platform == platform})
    return [f for c in cats if (f := index.figures(platform, now, c)).flagged]


def daily_series(
    facts: LedgerFacts,
    platform: str | None,
    start: datetime,
    end: datetime,
    *,
    category: str | None = None,
) -> list[Figures]:
    """Figures as of ``start``, ``start`` + 1 day, … up to and including ``end``."""
    if end < start:
        return []
    index = LedgerIndex(facts)
    out: list[Figures] = []
    day = start
    while day <= end:
        out.append(index.figures(platform, day, category))
        day += timedelta(days=1)
    return out


def reopened_count(facts: LedgerFacts, platform: str | None, now: datetime) -> int:
    """How many reopenings (claimed/removed found available again) happened by ``now``."""
    return LedgerIndex(facts).reopened(platform, now)


# ---------------------------------------------------------------- rendering


def statement(f: Figures) -> str:
    """A short plain-language statement from one Figures (every number from the ledger)."""
    day = f"{f.as_of.day} {f.as_of:%B %Y}"
    if not f.flagged:
        return f"As of {day}, no items are flagged to {f.platform}."
    done = f.removed + f.restricted
    pct = round(100 * (f.removed_share or 0.0))
    parts = [
        f"As of {day}, {f.platform} has removed or withheld {pct}% of the "
        f"{f.flagged:,} items flagged to it ({done:,}: {f.removed:,} removed, "
        f"{f.restricted:,} withheld in the country)"
    ]
    parts.append(f"{f.remaining:,} remain, {f.overdue:,} of them past their deadline")
    text = "; ".join(parts) + "."
    if f.claimed:
        text += (
            f" The platform reports {f.claimed:,} more as removed;"
            " checks have not yet confirmed it."
        )
    if f.on_time_share is not None:
        text += f" {round(100 * f.on_time_share)}% of the items due were removed by their deadline."
    if f.ttr_median_h is not None:
        text += (
            f" Half of the removals took {f.ttr_median_h:.1f} hours or less from notice; "
            f"nine in ten took {f.ttr_p90_h:.1f} hours or less."
        )
    if f.reuploads_found:
        text += (
            f" Listed media was found re-uploaded {f.reuploads_found:,} times; "
            f"{f.reuploads_removed:,} of the copies were removed, {f.reuploads_open:,} remain."
        )
    return text


@dataclass(frozen=True, slots=True)
class ReuploadFact:
    """A re-upload of an item's media (takedown.media): when found, when removed."""

    platform: str | None
    category: str
    found_at: datetime
    removed_at: datetime | None


def with_reuploads(f: Figures, facts: Sequence[ReuploadFact]) -> Figures:
    """``f`` with the re-upload counts of its platform (and category) as of its ``as_of``."""
    found = removed = 0
    for r in facts:
        if (f.platform != ALL and r.platform != f.platform) or r.found_at > f.as_of:
            continue
        if f.category is not None and r.category != f.category:
            continue
        found += 1
        removed += r.removed_at is not None and r.removed_at <= f.as_of
    return replace(
        f, reuploads_found=found, reuploads_removed=removed, reuploads_open=found - removed
    )


# The documented keys of ``takedown status --json`` (and ``GET /api/status``).
STATUS_KEYS = (
    "platform",
    "as_of",
    "flagged",
    "removed",
    "restricted",
    "claimed",
    "remaining",
    "overdue",
    "removed_share",
    "on_time_share",
    "ttr_median_h",
    "ttr_p90_h",
    "reuploads_found",
    "reuploads_removed",
    "reuploads_open",
)


def figures_json(f: Figures) -> dict[str, object]:
    """One Figures with exactly the documented keys (plus ``category`` when split by it)."""
    data: dict[str, object] = {k: getattr(f, k) for k in STATUS_KEYS}
    data["as_of"] = f.as_of.isoformat()
    if f.category is not None:
        data["category"] = f.category
    return data
