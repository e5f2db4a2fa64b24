"""Grouping items into notices: initial and repeat, deadlines, the projection, events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from takedown import config
from takedown.errors import NotFound
from takedown.model import NoticeKind
from takedown.notices import outbox
from takedown.notices.deadlines import notice_deadline
from takedown.notices.outbox import DueItem, plan
from takedown.store.audit import verify_chain
from takedown.store.schema import Event, Item, Notice, NoticeItem

from .support import START, add_items, make_platform


def test_plan_groups_initial_and_repeat_and_splits() -> None:
    profile = config.default().profile("eu-tco")
    due = [DueItem(i, "terrorism" if i == 3 else "drugs", i > 4) for i in range(1, 8)]
    notices = plan(reversed(due), profile, START, max_items=2)
    assert [(n.kind, [d.id for d in n.items]) for n in notices] == [
        (NoticeKind.INITIAL, [1, 2]),
        (NoticeKind.INITIAL, [3, 4]),
        (NoticeKind.REPEAT, [5, 6]),
        (NoticeKind.REPEAT, [7]),
    ]
    # the notice holding a terrorism item has its 1 h deadline; the others 24 h
    assert notices[1].deadline_at == START + timedelta(hours=1)
    assert notices[0].deadline_at == START + timedelta(hours=24)


def test_notice_deadline_is_earliest() -> None:
    profile = config.default().profile("eu-tco")
    assert notice_deadline(profile, ["drugs", "terrorism"], START) == START + timedelta(hours=1)
    assert notice_deadline(profile, ["drugs"], START) == START + timedelta(hours=24)


def test_send_initial_then_repeat_after_deadline(db) -> None:  # type: ignore[no-untyped-def]
    pid, _secret, _token = make_platform(db)
    ids = add_items(db, pid, 5)
    [res] = outbox.send(db, now=START, actor="t", platform="twitter")
    assert len(res.notices) == 1 and res.initial_items == 5 and res.repeat_items == 0
    with db.reading() as s:
        deadlines = set(s.scalars(select(Item.deadline_at).where(Item.id.in_(ids))))
        assert deadlines == {START + timedelta(hours=24)}
        n = s.get(Notice, res.notices[0])
        assert n.kind == "initial" and n.delivery_state == "pending"
        assert n.next_attempt_at == START
    # nothing due while the notice runs
    [again] = outbox.send(db, now=START + timedelta(hours=23), actor="t")
    assert again.notices == []
    # two answered, the rest open past the deadline → one repeat notice of three
    with db.session() as s:
        for iid in ids[:2]:
            s.get(Item, iid).state = "claimed"
    later = START + timedelta(hours=25)
    [rep] = outbox.send(db, now=later, actor="t")
    assert rep.repeat_items == 3 and rep.initial_items == 0
    with db.reading() as s:
        members = set(
            s.scalars(select(NoticeItem.item_id).where(NoticeItem.notice_id == rep.notices[0]))
        )
        assert members == set(ids[2:])
        assert s.get(Notice, rep.notices[0]).kind == "repeat"
        # the legal deadline stays the first one
        assert set(s.scalars(select(Item.deadline_at).where(Item.id.in_(ids)))) == {
            START + timedelta(hours=24)
        }
        types = list(s.scalars(select(Event.type).where(Event.type == "notice.issued")))
        assert len(types) == 2
        assert verify_chain(s).ok


def test_new_items_join_a_new_initial_notice(db) -> None:  # type: ignore[no-untyped-def]
    pid, *_ = make_platform(db)
    add_items(db, pid, 3, prefix="a")
    outbox.send(db, now=START, actor="t")
    new = add_items(db, pid, 2, prefix="b")
    [res] = outbox.send(db, now=START + timedelta(hours=1), actor="t")
    assert res.initial_items == 2 and res.repeat_items == 0
    with db.reading() as s:
        members = set(
            s.scalars(select(NoticeItem.item_id).where(NoticeItem.notice_id == res.notices[0]))
        )
    assert members == set(new)


def test_delisted_items_are_not_noticed(db) -> None:  # type: ignore[no-untyped-def]
    pid, *_ = make_platform(db)
    ids = add_items(db, pid, 2)
    with db.session() as s:
        s.get(Item, ids[0]).delisted_at = START
    [res] = outbox.send(db, now=START, actor="t")
    assert res.initial_items == 1


def test_list_overdue_and_show(db) -> None:  # type: ignore[no-untyped-def]
    pid, *_ = make_platform(db)
    add_items(db, pid, 4)
    [res] = outbox.send(db, now=START, actor="t")
    assert outbox.list_notices(db, now=START, overdue=True) == []
    rows = outbox.list_notices(db, now=START + timedelta(days=2), overdue=True)
    assert [r.id for r in rows] == res.notices and rows[0].open_items == 4
    doc = outbox.show_notice(db, res.notices[0])
    assert doc["platform"] == "twitter" and len(doc["items"]) == 4
    assert doc["delivery_log"] == []


def test_unknown_platform(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        outbox.send(db, now=START, actor="t", platform="nope")
