"""The audit chain: appended in the change's transaction, tampering is found."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Event

T0 = datetime(2021, 3, 10, 12, 0, tzinfo=UTC)


def _append(db: Database, n: int) -> None:
    for i in range(n):
        with db.session() as s:
            audit.record(
                s,
                at=T0 + timedelta(minutes=i),
                actor="analyst",
                type="test",
                payload={"i": i, "note": "ключ"},
            )


def test_chain_verifies_and_links(db: Database) -> None:
    _append(db, 5)
    with db.reading() as s:
        report = audit.verify_chain(s)
        events = s.scalars(select(Event).order_by(Event.seq)).all()
    assert report.ok and report.events == 5
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


def test_tampered_payload_is_caught(db: Database) -> None:
    _append(db, 5)
    with db.session() as s:
        s.execute(update(Event).where(Event.seq == 3).values(payload={"i": 99}))
    with db.reading() as s:
        report = audit.verify_chain(s)
    assert not report.ok
    assert report.first_broken == 3
    assert "hash" in (report.problem or "")


def test_deleted_event_is_caught(db: Database) -> None:
    _append(db, 4)
    with db.session() as s:
        s.execute(text("DELETE FROM events WHERE seq = 2"))
    with db.reading() as s:
        report = audit.verify_chain(s)
    assert (report.ok, report.first_broken) == (False, 2)


def test_truncated_tail_is_caught(db: Database) -> None:
    _append(db, 4)
    with db.session() as s:
        s.execute(text("DELETE FROM events WHERE seq = 4"))
    with db.reading() as s:
        report = audit.verify_chain(s)
    assert (report.ok, report.first_broken) == (False, 4)


def test_event_rolls_back_with_its_change(db: Database) -> None:
    _append(db, 1)
    try:
        with db.session() as s:
            audit.record(s, at=T0, actor="a", type="test", payload={})
            raise RuntimeError("change failed")
    except RuntimeError:
        pass
    _append(db, 1)
    with db.reading() as s:
        assert audit.verify_chain(s).events == 2
