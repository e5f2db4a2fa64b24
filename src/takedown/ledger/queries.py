"""The ledger's database reads: the facts snapshot, and ``takedown status`` two ways.

``status`` is the one answer to "what are the compliance figures": the CLI and the
regulator API both call it and only render its result. As of now it reads the ``items``
projection with SQL aggregates (``status_fast``, valid for ``now`` at or after the latest
fact, fast at millions of items); as of a given moment it replays the facts
(``status_from_facts``, any moment, the past too). The two agree (tests/ledger).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.errors import NotFound
from takedown.ledger.figures import (
    ALL,
    CheckFact,
    ItemFact,
    LedgerFacts,
    LedgerIndex,
    ResponseFact,
    ReuploadFact,
    figures_at,
    figures_by_category,
    figures_json,
    make_figures,
    statement,
    with_reuploads,
)
from takedown.model import Figures, ItemState, NoticeKind, Verdict
from takedown.notices.deadlines import item_deadline
from takedown.store.db import Database
from takedown.store.schema import (
    Check,
    Item,
    Notice,
    NoticeItem,
    Platform,
    Response,
    Reupload,
    VantagePoint,
)

# ---------------------------------------------------------------- loading facts


def first_notices(
    session: Session, until: datetime | None, item_ids: Iterable[int] | None = None
) -> dict[int, datetime]:
    """When each item was first noticed (repeat notices do not move its deadline)."""
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
    cfg = config_mod.default()
    q = select(
        Item.id, Platform.slug, Platform.profile, Item.category, Item.listed_at, Item.delisted_at
    ).outerjoin(Platform, Platform.id == Item.platform_id)
    if platform is not None:
        q = q.where(Platform.slug == platform)
    if until is not None:
        q = q.where(Item.listed_at <= until)
    notices = first_notices(session, until)
    items = []
    for iid, slug, profile, cat, listed, delisted in session.execute(q):
        noticed = notices.get(iid)
        # the legal deadline of the item's own category from its first notice (repeat
        # notices and the notice's own, earliest-category deadline do not move it)
        deadline = None
        if noticed is not None:
            deadline = item_deadline(cfg.profile(profile or "ru-2021"), cat, noticed)
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


# ---------------------------------------------------------------- fast path (projection + SQL)


def _aggregates(now: datetime) -> list[object]:
    """flagged, removed, restricted, claimed, overdue, due, on_time, with_ttr: conditional sums
    in one pass over the rows a query selects."""

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


def _platform_scope(session: Session, platform: str | None) -> object:
    """SQL condition: the items of ``platform`` (None: of any platform)."""
    if platform is None:
        return Item.platform_id.is_not(None)
    pid = session.scalar(select(Platform.id).where(Platform.slug == platform))
    if pid is None:
        raise NotFound(f"unknown platform {platform!r}", where="--platform")
    return Item.platform_id == pid


def _all_items_totals(session: Session, scope: object, now: datetime) -> list[int]:
    """The ``_aggregates`` figures over every item in ``scope``, listed or not as of ``now``.

    Every figure is an index-only range count (the indexes lead with the platform and
    cover what each query reads).
    """
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
    return [
        sum(by_state.values()),
        by_state.get(ItemState.REMOVED.value, 0),
        by_state.get(ItemState.RESTRICTED.value, 0),
        by_state.get(ItemState.CLAIMED.value, 0),
        int(open_overdue or 0) + int(late_claims or 0),
        int(due_n),
        int(on_time),
        int(ttr_n or 0),
    ]


def _register_totals(session: Session, scope: object, now: datetime) -> tuple[list[int], int]:
    """The ``_aggregates`` figures over the items in the register as of ``now``, and how
    many items with a TTR were left out (delisted by then, or listed later)."""
    # All the platform's items are counted, then the few outside the register are taken
    # off: a filter on the listing dates in every scan would cost about as much as the
    # counts themselves.
    totals = _all_items_totals(session, scope, now)
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
    return totals, outside_ttr


def _ttr_quantiles(
    session: Session, conds: list[object], count: int
) -> tuple[float | None, float | None]:
    """Median and 90th percentile TTR (nearest rank) of ``count`` items matching ``conds``."""
    if not count:
        return None, None
    return (
        _nth_ttr(session, conds, math.ceil(0.5 * count) - 1),
        _nth_ttr(session, conds, math.ceil(0.9 * count) - 1),
    )


def _nth_ttr(session: Session, conds: list[object], k: int) -> float | None:
    q = (
        select(Item.ttr_s)
        .where(*conds, Item.ttr_s.is_not(None))
        .order_by(Item.ttr_s)
        .limit(1)
        .offset(max(k, 0))
    )
    return session.scalar(q)


def status_fast(
    session: Session,
    platform: str | None,
    now: datetime,
    *,
    by_category: bool = False,
) -> list[Figures]:
    """Figures from the projection with SQL aggregates (valid for ``now`` at or after the
    latest fact). One row per category when ``by_category``, else one row."""
    scope = _platform_scope(session, platform)
    listed = [Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now)]
    if by_category:
        return _status_by_category(session, platform, now, [*listed, scope])
    totals, outside_ttr = _register_totals(session, scope, now)
    flagged, removed, restricted, claimed, overdue, due_all, on_time_n, ttr_count = totals
    # the index walk skips items outside the register only when there are some to skip
    conds = [scope, *listed] if outside_ttr else [scope]
    med, p90 = _ttr_quantiles(session, conds, ttr_count)
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
        med, p90 = _ttr_quantiles(session, [*conds, Item.category == cat], int(ttr_n))
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


def reupload_facts(session: Session, platform: str | None = None) -> list[ReuploadFact]:
    """Every re-upload of a platform's item (of ``platform`` only, when given)."""
    q = (
        select(Platform.slug, Item.category, Reupload.found_at, Reupload.removed_at)
        .join(Item, Item.id == Reupload.item_id)
        .join(Platform, Platform.id == Item.platform_id)
    )
    if platform is not None:
        q = q.where(Platform.slug == platform)
    return [ReuploadFact(*r) for r in session.execute(q)]


# ---------------------------------------------------------------- takedown status


@dataclass(frozen=True)
class Status:
    """The compliance figures ``takedown status`` and ``GET /api/status`` show."""

    as_of: datetime
    figures: list[Figures]  # one per platform (and category), platforms by slug
    single: bool  # one platform asked for, not split by category: JSON is one object

    def as_json(self) -> dict[str, object] | list[dict[str, object]]:
        """The documented ``--json`` document (``STATUS_KEYS``, plus ``category``)."""
        out = [figures_json(f) for f in self.figures]
        return out[0] if self.single and len(out) == 1 else out

    def statements(self) -> list[str]:
        """One plain-language statement per row (``--statement``)."""
        return [statement(f) for f in self.figures]


def status(
    source: Session | Database,
    now: datetime,
    *,
    platform: str | None = None,
    at: datetime | None = None,
    by_category: bool = False,
) -> Status:
    """Compliance figures of ``platform`` (None: each platform, by slug).

    Without ``at``: as of ``now``, from the projection. With ``at``: as of ``at``, replayed
    from the facts (any moment, the past too). An unknown platform is NotFound.
    """
    if isinstance(source, Database):
        with source.reading() as session:
            return status(session, now, platform=platform, at=at, by_category=by_category)
    slugs = (
        [platform]
        if platform
        else list(source.scalars(select(Platform.slug).order_by(Platform.slug)))
    )
    rows: list[Figures] = []
    if at is None:
        for slug in slugs:
            rows += status_fast(source, slug, now, by_category=by_category)
    else:  # the facts are read once for every platform asked (they are the costly part)
        facts = load_facts(source, platform, at)
        facts.items = [i for i in facts.items if i.platform is not None]
        index = LedgerIndex(facts)
        for slug in slugs:
            if by_category:
                rows += figures_by_category(facts, slug, at)
            else:
                rows.append(index.figures(slug, at, None))
    reuploads = reupload_facts(source, platform)
    rows = [with_reuploads(f, reuploads) for f in rows]
    return Status(now if at is None else at, rows, bool(platform) and not by_category)
