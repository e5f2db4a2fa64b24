"""The item-state projection, and its only writer.

``items.state``, ``state_at``, ``verified_at``, ``ttr_s`` and ``deadline_at`` are derived
from the facts (notices, responses, checks, delistings) so that ``takedown status`` stays
fast at millions of items. They are written here and nowhere else: whoever records a fact
calls the matching function inside its own transaction (the functions take the session
and the fact, and never commit), and ``rebuild`` recomputes all of them from the facts
(``takedown ledger rebuild``). The state machine itself is ``figures.on_response`` /
``figures.on_check``, the same one the pure figures replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from takedown.ledger.figures import (
    FAR_FUTURE,
    ItemStatus,
    LedgerIndex,
    on_check,
    on_response,
    ttr_seconds,
)
from takedown.ledger.queries import first_notices, load_facts
from takedown.model import ItemState
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item, NoticeItem

# The state a newly listed item is inserted with (the register's bulk insert uses it).
NEW_ITEM_STATE = ItemState.OPEN


@dataclass(frozen=True, slots=True)
class Transition:
    """One item's state change, as a fact was applied."""

    item_id: int
    old: str
    new: str
    at: datetime


def _load_status(session: Session, item_ids: list[int]) -> dict[int, tuple[ItemStatus, bool]]:
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
    notices = first_notices(session, None, newly_verified) if newly_verified else {}
    for iid, st in changed.items():
        values: dict[str, object] = {"state": st.state.value, "state_at": st.state_at}
        if iid in newly_verified:
            values["verified_at"] = st.verified_at
            values["ttr_s"] = ttr_seconds(notices.get(iid), st.verified_at)
        session.execute(update(Item).where(Item.id == iid).values(**values))


def apply_checks(
    session: Session, checks: Sequence[tuple[int, str, datetime]], *, in_country: bool
) -> list[Transition]:
    """Apply checks (item_id, verdict, at) from one vantage point.

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


def apply_response(session: Session, item_id: int, action: str, at: datetime) -> Transition | None:
    """Apply a platform's response (a claim turns an open item into ``claimed``).

    Works on the session's ``Item`` object, so a caller that loaded the items (and reads
    ``item.state`` afterwards) sees the change at once.
    """
    item = session.get(Item, item_id)
    if item is None or item.delisted_at is not None:
        return None
    st = ItemStatus(ItemState(item.state), item.state_at, item.verified_at)
    new = on_response(st, action, at)
    if new == st:
        return None
    item.state = new.state.value
    item.state_at = new.state_at
    return Transition(item_id, st.state.value, new.state.value, at)


def apply_delist(session: Session, item_id: int, at: datetime) -> None:
    """Apply a delisting recorded at ``at`` (the item leaves the figures from then)."""
    session.execute(
        update(Item).where(Item.id == item_id).values(state=ItemState.DELISTED.value, state_at=at)
    )


def apply_delist_many(session: Session, item_ids: Sequence[int], at: datetime) -> None:
    """``apply_delist`` for many items delisted at the same moment (a register sync)."""
    session.execute(
        update(Item)
        .where(Item.id.in_(item_ids))
        .values(state=ItemState.DELISTED.value, state_at=at)
        .execution_options(synchronize_session=False)
    )


def set_deadline(session: Session, notice_id: int, deadlines: Mapping[str, datetime]) -> None:
    """Give the items of a first notice their legal deadline (``deadlines``: category →
    deadline). An item that already has one keeps it: repeat notices never move it."""
    in_notice = select(NoticeItem.item_id).where(NoticeItem.notice_id == notice_id)
    for category in sorted(deadlines):
        session.execute(
            update(Item)
            .where(Item.id.in_(in_notice), Item.category == category, Item.deadline_at.is_(None))
            .values(deadline_at=deadlines[category])
            .execution_options(synchronize_session=False)
        )


def rebuild(session: Session, now: datetime, *, batch: int = 5000) -> int:
    """Recompute state, state_at, verified_at, ttr_s, deadline_at of every item from facts.

    Returns the number of items whose projection changed.
    """
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
        st = index.status(item, FAR_FUTURE)
        if item.delisted_at is not None:
            want = (ItemState.DELISTED.value, item.delisted_at)
        else:
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


def rebuild_db(db: Database, now: datetime, actor: str) -> int:
    """``rebuild`` in a transaction of its own, audited as ``ledger.rebuilt``."""
    with db.session() as session:
        changed = rebuild(session, now)
        audit.record(
            session, at=now, actor=actor, type="ledger.rebuilt", payload={"changed": changed}
        )
    return changed
