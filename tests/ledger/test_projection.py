"""The item-state projection through the real writers, and ``ledger rebuild`` reproducing it.

Every fact goes in the way production records it: notices by ``outbox.send`` (the deadline,
``set_deadline``), responses by ``record_responses`` (``apply_response``), checks with
``apply_checks`` (as the verification runner writes them), a delisting by
``registry.service.delist`` (``apply_delist``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, update
from verify.fixtures import T0, add_items, add_platform

from takedown import ledger
from takedown.errors import NotFound
from takedown.model import ResponseAction
from takedown.notices import outbox
from takedown.notices.responses import ResponseIn, record_responses
from takedown.registry import service as registry
from takedown.store.db import Database
from takedown.store.schema import Check, Item

H = timedelta(hours=1)
PROJECTION = (Item.id, Item.state, Item.state_at, Item.verified_at, Item.ttr_s, Item.deadline_at)


def _projection(db: Database) -> dict[int, tuple]:
    with db.reading() as s:
        return {row[0]: tuple(row[1:]) for row in s.execute(select(*PROJECTION))}


def _checks(db: Database, batch: list[tuple[int, str, datetime]]) -> None:
    with db.session() as s:
        s.execute(insert(Check), [{"item_id": i, "verdict": v, "at": a} for i, v, a in batch])
        ledger.apply_checks(s, batch, in_country=True)


def _respond(db: Database, pid: int, item_ids: list[int], action: str, at: datetime) -> None:
    reason = "policy" if action == "rejected" else None
    batch = [ResponseIn(i, ResponseAction(action), reason, reason) for i in item_ids]
    record_responses(db, pid, batch, now=at)


def _scenario(db: Database) -> list[int]:
    """Twenty items, each writer used on some of them; returns the item ids."""
    pid = add_platform(db)
    ids = add_items(db, 12, "http://127.0.0.1:9", category="suicide")
    ids += add_items(db, 8, "http://127.0.0.1:9", category="drugs", start=12)
    outbox.send(db, now=T0, actor="test")  # initial notice: deadlines T0 + 24h
    _respond(db, pid, ids[0:6], "removed", T0 + 2 * H)  # claims
    _respond(db, pid, ids[6:8], "rejected", T0 + 2 * H)
    _checks(db, [(i, "removed", T0 + 5 * H) for i in ids[0:3]])  # claims confirmed
    _checks(db, [(ids[3], "available", T0 + 5 * H)])  # a false claim: reopened
    _checks(db, [(ids[8], "restricted", T0 + 6 * H)])  # withheld without saying so
    registry.delist(db, ids[9], "D-lift-1", now=T0 + 10 * H, actor="test")
    _respond(db, pid, [ids[10]], "restricted", T0 + 30 * H)  # a claim after the deadline
    outbox.send(db, now=T0 + 30 * H, actor="test")  # repeat notice: deadlines stay
    _checks(db, [(ids[12], "removed", T0 + 40 * H)])  # late removal
    return ids


def test_each_writer_changes_its_part_of_the_projection(db: Database) -> None:
    ids = _scenario(db)
    p = _projection(db)
    deadline = T0 + 24 * H
    assert all(p[i][4] == deadline for i in ids)  # the repeat notice did not move them
    assert [p[i][0] for i in ids[0:6]] == ["removed"] * 3 + ["open", "claimed", "claimed"]
    assert p[ids[4]][1] == T0 + 2 * H
    assert [p[i][0] for i in ids[6:8]] == ["open", "open"]
    assert p[ids[8]][:3] == ("restricted", T0 + 6 * H, T0 + 6 * H)
    assert p[ids[8]][3] == 6 * 3600.0
    assert p[ids[9]][:2] == ("delisted", T0 + 10 * H)
    assert p[ids[10]][:2] == ("claimed", T0 + 30 * H)
    assert p[ids[12]][0] == "removed" and p[ids[12]][3] == 40 * 3600.0
    # a response to a delisted item is kept as a fact and changes nothing
    _respond(db, add_platform(db), [ids[9]], "removed", T0 + 50 * H)
    assert _projection(db)[ids[9]] == p[ids[9]]


def test_rebuild_reproduces_the_projection_of_every_writer(db: Database) -> None:
    _scenario(db)
    now = T0 + 60 * H
    before = _projection(db)
    with db.reading() as s:
        figures = ledger.status(s, now, platform="twitter").figures
    with db.session() as s:  # every projected column lost
        s.execute(
            update(Item).values(
                state="open", state_at=None, verified_at=None, ttr_s=None, deadline_at=None
            )
        )
    with db.session() as s:
        assert ledger.rebuild(s, now) == len(before)
    assert _projection(db) == before
    assert ledger.status(db, now, platform="twitter").figures == figures
    with db.session() as s:  # a rebuild of a correct projection changes nothing
        assert ledger.rebuild(s, now) == 0


def test_status_is_one_document_for_one_platform_and_a_list_otherwise(db: Database) -> None:
    _scenario(db)
    now = T0 + 60 * H
    one = ledger.status(db, now, platform="twitter")
    assert one.as_of == now and len(one.figures) == 1
    doc = one.as_json()
    assert isinstance(doc, dict) and doc == ledger.figures_json(one.figures[0])
    assert doc["flagged"] == 19 and doc["overdue"] > 0
    every = ledger.status(db, now)
    assert every.as_json() == [doc]
    cats = ledger.status(db, now, platform="twitter", by_category=True)
    assert [f.category for f in cats.figures] == ["drugs", "suicide"]
    assert isinstance(cats.as_json(), list)
    past = ledger.status(db, now, platform="twitter", at=T0 + H)
    assert past.as_of == T0 + H and past.figures[0].removed == 0
    [text] = one.statements()
    assert text.startswith("As of 12 March 2021, twitter has removed or withheld ")


def test_status_of_an_unknown_platform_is_not_found(db: Database) -> None:
    add_platform(db)
    with pytest.raises(NotFound, match="nope"):
        ledger.status(db, T0, platform="nope")
