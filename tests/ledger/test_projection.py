"""The item-state projection through the real writers (see ``scenario``), and ``ledger
rebuild`` reproducing it."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from verify.fixtures import add_platform

from takedown import ledger
from takedown.errors import NotFound
from takedown.store.db import Database
from takedown.store.schema import Item

from .scenario import T0, H, projected_columns, respond, scenario


def test_each_writer_changes_its_part_of_the_projection(db: Database) -> None:
    ids = scenario(db)
    p = projected_columns(db)
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
    respond(db, add_platform(db), [ids[9]], "removed", T0 + 50 * H)
    assert projected_columns(db)[ids[9]] == p[ids[9]]


def test_rebuild_reproduces_the_projection_of_every_writer(db: Database) -> None:
    scenario(db)
    now = T0 + 60 * H
    before = projected_columns(db)
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
    assert projected_columns(db) == before
    assert ledger.status(db, now, platform="twitter").figures == figures
    with db.session() as s:  # a rebuild of a correct projection changes nothing
        assert ledger.rebuild(s, now) == 0


def test_status_is_one_document_for_one_platform_and_a_list_otherwise(db: Database) -> None:
    scenario(db)
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
