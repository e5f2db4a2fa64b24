"""The operational figures ``/metrics`` exposes, read from the database at one moment.

Plain data (``Gauges``) so the web layer only names and labels them: items listed now by
platform and state, overdue items by platform, notices by delivery state, measures by
state now, the last feed publication and the active staff tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from takedown import accounts
from takedown.model import ItemState, MeasureState
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, Item, Measure, Notice, Platform

NO_PLATFORM = "-"


@dataclass(frozen=True)
class Gauges:
    """What the database says at ``now``."""

    items: list[tuple[str, str, int]] = field(default_factory=list)  # platform, state, count
    overdue: list[tuple[str, int]] = field(default_factory=list)  # platform (by slug), count
    notices: list[tuple[str, int]] = field(default_factory=list)  # delivery state, count
    measures: dict[str, int] = field(default_factory=dict)  # every MeasureState, count now
    last_sequence: int | None = None
    last_published_at: datetime | None = None
    active_tokens: int = 0


def _item_counts(
    session: Session, now: datetime, slugs: dict[int, str]
) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    live = (Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now))
    due = and_(Item.deadline_at.is_not(None), Item.deadline_at <= now)
    late = and_(
        due,
        or_(
            Item.state == ItemState.OPEN.value,
            and_(Item.state == ItemState.CLAIMED.value, Item.state_at > Item.deadline_at),
        ),
    )
    items = [
        (slugs.get(pid, NO_PLATFORM), state, n)
        for pid, state, n in session.execute(
            select(Item.platform_id, Item.state, func.count())
            .where(*live)
            .group_by(Item.platform_id, Item.state)
        )
    ]
    counts = dict(
        session.execute(
            select(Item.platform_id, func.count())
            .where(*live, late, Item.platform_id.is_not(None))
            .group_by(Item.platform_id)
        ).all()
    )
    overdue = [
        (slug, counts.get(pid, 0)) for pid, slug in sorted(slugs.items(), key=lambda kv: kv[1])
    ]
    return items, overdue


def _measures_now(session: Session, now: datetime) -> dict[str, int]:
    from takedown.policy.measures import state_at

    by_state = {s.value: 0 for s in MeasureState}
    for m in session.scalars(select(Measure)):
        s = state_at(m, now)
        if s is not None:
            by_state[s] = by_state.get(s, 0) + 1
    return by_state


def read_gauges(db: Database, now: datetime) -> Gauges:
    """Every gauge, in one read transaction."""
    with db.reading() as session:
        slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
        items, overdue = _item_counts(session, now, slugs)
        notices = [
            (state, n)
            for state, n in session.execute(
                select(Notice.delivery_state, func.count()).group_by(Notice.delivery_state)
            )
        ]
        last = session.execute(
            select(FeedPublication.sequence, FeedPublication.published_at)
            .order_by(FeedPublication.sequence.desc())
            .limit(1)
        ).first()
        return Gauges(
            items=items,
            overdue=overdue,
            notices=notices,
            measures=_measures_now(session, now),
            last_sequence=last[0] if last else None,
            last_published_at=last[1] if last else None,
            active_tokens=accounts.active_tokens(session),
        )
