"""A mixed scenario written through the production writers of the item-state projection.

Every fact goes in the way production records it: notices by ``outbox.send`` (the deadline,
``set_deadline``), responses by ``record_responses`` (``apply_response``), checks with
``apply_checks`` (as the verification runner writes them), a delisting by
``registry.service.delist`` (``apply_delist``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select
from verify.fixtures import T0, add_items, add_platform

from takedown import ledger
from takedown.model import ResponseAction
from takedown.notices import outbox
from takedown.notices.responses import ResponseIn, record_responses
from takedown.registry import service as registry
from takedown.store.db import Database
from takedown.store.schema import Check, Item

__all__ = ["T0", "H", "projected_columns", "respond", "scenario"]

H = timedelta(hours=1)
PROJECTION = (Item.id, Item.state, Item.state_at, Item.verified_at, Item.ttr_s, Item.deadline_at)


def projected_columns(db: Database) -> dict[int, tuple]:
    with db.reading() as s:
        return {row[0]: tuple(row[1:]) for row in s.execute(select(*PROJECTION))}


def _checks(db: Database, batch: list[tuple[int, str, datetime]]) -> None:
    with db.session() as s:
        s.execute(insert(Check), [{"item_id": i, "verdict": v, "at": a} for i, v, a in batch])
        ledger.apply_checks(s, batch, in_country=True)


def respond(db: Database, pid: int, item_ids: list[int], action: str, at: datetime) -> None:
    reason = "policy" if action == "rejected" else None
    batch = [ResponseIn(i, ResponseAction(action), reason, reason) for i in item_ids]
    record_responses(db, pid, batch, now=at)


def scenario(db: Database) -> list[int]:
    """Twenty items, each writer used on some of them; returns the item ids."""
    pid = add_platform(db)
    ids = add_items(db, 12, "http://127.0.0.1:9", category="suicide")
    ids += add_items(db, 8, "http://127.0.0.1:9", category="drugs", start=12)
    outbox.send(db, now=T0, actor="test")  # initial notice: deadlines T0 + 24h
    respond(db, pid, ids[0:6], "removed", T0 + 2 * H)  # claims
    respond(db, pid, ids[6:8], "rejected", T0 + 2 * H)
    _checks(db, [(i, "removed", T0 + 5 * H) for i in ids[0:3]])  # claims confirmed
    _checks(db, [(ids[3], "available", T0 + 5 * H)])  # a false claim: reopened
    _checks(db, [(ids[8], "restricted", T0 + 6 * H)])  # withheld without saying so
    registry.delist(db, ids[9], "D-lift-1", now=T0 + 10 * H, actor="test")
    respond(db, pid, [ids[10]], "restricted", T0 + 30 * H)  # a claim after the deadline
    outbox.send(db, now=T0 + 30 * H, actor="test")  # repeat notice: deadlines stay
    _checks(db, [(ids[12], "removed", T0 + 40 * H)])  # late removal
    return ids
