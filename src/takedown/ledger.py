"""The compliance ledger: figures from items, notices, responses and checks.

The core is pure: ``figures_at`` and ``daily_series`` take a ``LedgerFacts`` snapshot
(plain rows) and an explicit ``now``. ``load_facts`` builds the snapshot from the
database. For ``takedown status`` at millions of items, ``status_fast`` answers from the
``items`` projection (state, state_at, verified_at, ttr_s, deadline_at) with SQL
aggregates; the projection is written in the same transaction as the fact that changes it
(``project_checks``, ``project_response``) and can be recomputed (``rebuild_projection``).

Item state as of ``now`` (one small state machine, ``on_response`` / ``on_check``):
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from takedown.model import Figures, ItemState, NoticeKind, ResponseAction, Verdict

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
_DONE = {ItemState.REMOVED, ItemState.RESTRICTED}


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


# ---------------------------------------------------------------- database: loading facts


def _first_notices(
    session: Session, until: datetime | None, item_ids: Iterable[int] | None = None
) -> dict[int, datetime]:
    """When each item was first noticed (repeat notices do not move its deadline)."""
    from takedown.store.schema import Notice, NoticeItem

    # An item's first notice is its initial one; repeat notices (one per overdue period)
    # would make this scan grow with every day of non-compliance.
    q = (
        select(NoticeItem.item_id, func.min(Notice.issued_at))
        .join(Notice, Notice.id == NoticeItem.notice_id)
        .where(Notice.kind == NoticeKind.INITIAL.value)
        .group_by(NoticeItem.item_id)
    )
    if until is not None:
        q = q.where(Notice.issued_at <= until)
    if item_ids is not None:
        q = q.where(NoticeItem.item_id.in_(list(item_ids)))
    return {item_id: issued for item_id, issued in session.execute(q)}  # min() keeps the type


def load_facts(
    session: Session, platform: str | None = None, until: datetime | None = None
) -> LedgerFacts:
    """Read the facts (items of ``platform`` or all, facts at or before ``until``)."""
    from takedown import config as config_mod
    from takedown.store.schema import Check, Item, Platform, Response, VantagePoint

    cfg = config_mod.default()
    q = select(
        Item.id, Platform.slug, Platform.profile, Item.category, Item.listed_at, Item.delisted_at
    ).outerjoin(Platform, Platform.id == Item.platform_id)
    if platform is not None:
        q = q.where(Platform.slug == platform)
    if until is not None:
        q = q.where(Item.listed_at <= until)
    notices = _first_notices(session, until)
    items = []
    for iid, slug, profile, cat, listed, delisted in session.execute(q):
        noticed = notices.get(iid)
        # the legal deadline of the item's own category from its first notice (repeat
        # notices and the notice's own, earliest-category deadline do not move it)
        deadline = None
        if noticed is not None:
            deadline = noticed + cfg.profile(profile or "ru-2021").deadline_for(cat)
        items.append(ItemFact(iid, slug, cat, listed, delisted, noticed, deadline))
    wanted = {i.id for i in items}

    rq = select(Response.item_id, Response.action, Response.at)
    if until is not None:
        rq = rq.where(Response.at <= until)
    responses = [ResponseFact(*r) for r in session.execute(rq) if r[0] in wanted]

    cq = (
        select(Check.item_id, Check.verdict, Check.at, VantagePoint.in_country)
        .outerjoin(VantagePoint, VantagePoint.id == Check.vantage_id)
        .where(
            Check.verdict.in_(
                [Verdict.AVAILABLE.value, Verdict.REMOVED.value, Verdict.RESTRICTED.value]
            )
        )
    )
    if until is not None:
        cq = cq.where(Check.at <= until)
    checks = [
        CheckFact(iid, verdict, at, True if inc is None else bool(inc))
        for iid, verdict, at, inc in session.execute(cq)
        if iid in wanted
    ]
    return LedgerFacts(items, responses, checks)


# ---------------------------------------------------------------- the projection


@dataclass(frozen=True, slots=True)
class Transition:
    item_id: int
    old: str
    new: str
    at: datetime


def _load_status(session: Session, item_ids: list[int]) -> dict[int, tuple[ItemStatus, bool]]:
    from takedown.store.schema import Item

    rows = session.execute(
        select(Item.id, Item.state, Item.state_at, Item.verified_at, Item.delisted_at).where(
            Item.id.in_(item_ids)
        )
    )
    return {
        iid: (ItemStatus(ItemState(state), state_at, verified), delisted is not None)
        for iid, state, state_at, verified, delisted in rows
    }


def _store_status(
    session: Session, changed: dict[int, ItemStatus], newly_verified: set[int]
) -> None:
    from takedown.store.schema import Item

    notices = _first_notices(session, None, newly_verified) if newly_verified else {}
    for iid, st in changed.items():
        values: dict[str, object] = {"state": st.state.value, "state_at": st.state_at}
        if iid in newly_verified:
            values["verified_at"] = st.verified_at
            noticed = notices.get(iid)
            values["ttr_s"] = ttr_seconds(noticed, st.verified_at)
        session.execute(update(Item).where(Item.id == iid).values(**values))


def project_checks(
    session: Session, checks: Sequence[tuple[int, str, datetime]], *, in_country: bool
) -> list[Transition]:
    """Apply checks (item_id, verdict, at) to the items projection in the caller's transaction.

    Returns the state changes (reopenings are those whose ``new`` is ``open``).
    """
    if not in_country or not checks:
        return []
    current = _load_status(session, sorted({c[0] for c in checks}))
    changed: dict[int, ItemStatus] = {}
    newly_verified: set[int] = set()
    out: list[Transition] = []
    for item_id, verdict, at in sorted(checks, key=lambda c: c[2]):
        if item_id not in current:
            continue
        st, delisted = changed.get(item_id) or current[item_id][0], current[item_id][1]
        if delisted:
            continue
        new = on_check(st, verdict, at, True)
        if new != st:
            if new.verified_at is not None and st.verified_at is None:
                newly_verified.add(item_id)
            if new.state != st.state:
                out.append(Transition(item_id, st.state.value, new.state.value, at))
            changed[item_id] = new
    _store_status(session, changed, newly_verified)
    return out


def project_response(
    session: Session, item_id: int, action: str, at: datetime
) -> Transition | None:
    """Apply a platform response to the projection (open → claimed) in the caller's transaction."""
    current = _load_status(session, [item_id]).get(item_id)
    if current is None or current[1]:
        return None
    st = current[0]
    new = on_response(st, action, at)
    if new == st:
        return None
    _store_status(session, {item_id: new}, set())
    return Transition(item_id, st.state.value, new.state.value, at)


def rebuild_projection(session: Session, now: datetime, *, batch: int = 5000) -> int:
    """Recompute state, state_at, verified_at, ttr_s, deadline_at of every item from facts.

    Returns the number of items whose projection changed.
    """
    from takedown.store.schema import Item

    facts = load_facts(session, None, None)
    index = LedgerIndex(facts)
    stored = {
        row[0]: tuple(row[1:])
        for row in session.execute(
            select(
                Item.id, Item.state, Item.state_at, Item.verified_at, Item.ttr_s, Item.deadline_at
            )
        )
    }
    changed = 0
    pending: list[dict[str, object]] = []
    for item in facts.items:
        if item.delisted_at is not None:
            want = (ItemState.DELISTED.value, item.delisted_at)
            st = index.status(item, FAR_FUTURE)
        else:
            st = index.status(item, FAR_FUTURE)
            want = (st.state.value, st.state_at)
        row = (
            *want,
            st.verified_at,
            ttr_seconds(item.noticed_at, st.verified_at),
            item.deadline_at,
        )
        if stored.get(item.id) != row:
            changed += 1
            pending.append(
                {
                    "b_id": item.id,
                    "state": row[0],
                    "state_at": row[1],
                    "verified_at": row[2],
                    "ttr_s": row[3],
                    "deadline_at": row[4],
                }
            )
        if len(pending) >= batch:
            _flush_rebuild(session, pending)
    _flush_rebuild(session, pending)
    return changed


def _flush_rebuild(session: Session, pending: list[dict[str, object]]) -> None:
    from sqlalchemy import bindparam

    from takedown.store.schema import Item

    if not pending:
        return
    stmt = (
        update(Item.__table__)
        .where(Item.__table__.c.id == bindparam("b_id"))
        .values(
            state=bindparam("state"),
            state_at=bindparam("state_at"),
            verified_at=bindparam("verified_at"),
            ttr_s=bindparam("ttr_s"),
            deadline_at=bindparam("deadline_at"),
        )
    )
    session.connection().execute(stmt, pending)
    pending.clear()


# ---------------------------------------------------------------- fast path (projection + SQL)


def _aggregates(now: datetime) -> list[object]:
    """flagged, removed, restricted, claimed, overdue, due, on_time, with_ttr: conditional sums
    in one pass over the rows a query selects."""
    from takedown.store.schema import Item

    def n(cond: object) -> object:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    due = and_(Item.deadline_at.is_not(None), Item.deadline_at <= now)
    return [
        func.count(),
        n(Item.state == ItemState.REMOVED.value),
        n(Item.state == ItemState.RESTRICTED.value),
        n(Item.state == ItemState.CLAIMED.value),
        n(
            and_(
                due,
                or_(
                    Item.state == ItemState.OPEN.value,
                    and_(Item.state == ItemState.CLAIMED.value, Item.state_at > Item.deadline_at),
                ),
            )
        ),
        n(due),
        n(and_(due, Item.verified_at.is_not(None), Item.verified_at <= Item.deadline_at)),
        n(Item.ttr_s.is_not(None)),
    ]


def status_fast(
    session: Session,
    platform: str | None,
    now: datetime,
    *,
    by_category: bool = False,
) -> list[Figures]:
    """Figures from the projection with SQL aggregates (valid for ``now`` at or after the
    latest fact). One row per category when ``by_category``, else one row."""
    from takedown.store.schema import Item, Platform

    if platform is not None:
        pid = session.scalar(select(Platform.id).where(Platform.slug == platform))
        if pid is None:
            from takedown.errors import NotFound

            raise NotFound(f"unknown platform {platform!r}", where="--platform")
        scope = Item.platform_id == pid
    else:
        scope = Item.platform_id.is_not(None)
    listed = [Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now)]
    if by_category:
        return _status_by_category(session, platform, now, [*listed, scope])

    # Every figure over all the platform's items is an index-only range count (the indexes
    # lead with the platform and cover what each query reads); the few items outside the
    # register as of ``now`` (delisted by then, or listed later) are then taken off. A filter
    # on the listing dates in every scan would cost about as much as the counts themselves.
    by_state: dict[str, int] = {
        state: int(k)
        for state, k in session.execute(
            select(Item.state, func.count()).where(scope).group_by(Item.state)
        )
    }
    due_cond = Item.deadline_at <= now
    open_overdue = session.scalar(
        select(func.count()).where(scope, Item.state == ItemState.OPEN.value, due_cond)
    )
    # a claim made after the deadline does not stop the clock
    late_claims = session.scalar(
        select(func.count()).where(
            scope,
            Item.state == ItemState.CLAIMED.value,
            due_cond,
            Item.state_at > Item.deadline_at,
        )
    )
    due_n, on_time = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((Item.verified_at <= Item.deadline_at, 1), else_=0)), 0),
        ).where(scope, due_cond)
    ).one()
    ttr_n = session.scalar(select(func.count()).where(scope, Item.ttr_s.is_not(None)))
    totals = [
        sum(by_state.values()),
        by_state.get(ItemState.REMOVED.value, 0),
        by_state.get(ItemState.RESTRICTED.value, 0),
        by_state.get(ItemState.CLAIMED.value, 0),
        int(open_overdue or 0) + int(late_claims or 0),
        int(due_n),
        int(on_time),
        int(ttr_n or 0),
    ]
    outside = [
        and_(Item.delisted_at.is_(None), Item.listed_at > now),
        and_(
            Item.delisted_at.is_not(None),
            or_(Item.delisted_at <= now, Item.listed_at > now),
        ),
    ]
    outside_ttr = 0
    for cond in outside:
        row = session.execute(select(*_aggregates(now)).where(scope, cond)).one()
        totals = [t - int(x) for t, x in zip(totals, row, strict=True)]
        outside_ttr += int(row[-1])
    flagged, removed, restricted, claimed, overdue, due_all, on_time_n, ttr_count = totals
    med = p90 = None
    if ttr_count:
        # the index walk skips items outside the register only when there are some to skip
        conds = [scope, *listed] if outside_ttr else [scope]
        med = _nth_ttr(session, conds, math.ceil(0.5 * ttr_count) - 1)
        p90 = _nth_ttr(session, conds, math.ceil(0.9 * ttr_count) - 1)
    return [
        make_figures(
            platform or ALL,
            now,
            flagged=flagged,
            removed=removed,
            restricted=restricted,
            claimed=claimed,
            overdue=overdue,
            due=due_all,
            on_time=on_time_n,
            ttr_median_s=med,
            ttr_p90_s=p90,
        )
    ]


def _status_by_category(
    session: Session, platform: str | None, now: datetime, conds: list[object]
) -> list[Figures]:
    """One pass over the platform's items with conditional sums, grouped by category."""
    from takedown.store.schema import Item

    q = (
        select(Item.category, *_aggregates(now))
        .where(*conds)
        .group_by(Item.category)
        .order_by(Item.category)
    )
    out = []
    for (
        cat,
        flagged,
        removed,
        restricted,
        claimed,
        overdue,
        due_n,
        on_time,
        ttr_n,
    ) in session.execute(q):
        med = p90 = None
        if ttr_n:
            extra = [Item.category == cat]
            med = _nth_ttr(session, conds + extra, math.ceil(0.5 * ttr_n) - 1)
            p90 = _nth_ttr(session, conds + extra, math.ceil(0.9 * ttr_n) - 1)
        out.append(
            make_figures(
                platform or ALL,
                now,
                flagged=int(flagged),
                removed=int(removed),
                restricted=int(restricted),
                claimed=int(claimed),
                overdue=int(overdue),
                due=int(due_n),
                on_time=int(on_time),
                ttr_median_s=med,
                ttr_p90_s=p90,
                category=cat,
            )
        )
    return out


def _nth_ttr(session: Session, conds: list[object], k: int) -> float | None:
    from takedown.store.schema import Item

    q = (
        select(Item.ttr_s)
        .where(*conds, Item.ttr_s.is_not(None))
        .order_by(Item.ttr_s)
        .limit(1)
        .offset(max(k, 0))
    )
    return session.scalar(q)


def status_from_facts(
    session: Session, platform: str | None, now: datetime, *, by_category: bool = False
) -> list[Figures]:
    """Figures from the facts (any ``now``, including the past)."""
    facts = load_facts(session, platform, now)
    if platform is None:
        facts.items = [i for i in facts.items if i.platform is not None]
    if by_category:
        return figures_by_category(facts, platform, now)
    return [figures_at(facts, platform, now)]


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
    return text


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
)


def figures_json(f: Figures) -> dict[str, object]:
    """One Figures with exactly the documented keys (plus ``category`` when split by it)."""
    data: dict[str, object] = {k: getattr(f, k) for k in STATUS_KEYS}
    data["as_of"] = f.as_of.isoformat()
    if f.category is not None:
        data["category"] = f.category
    return data
