"""The measures shell over a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.clock import SimClock
from takedown.errors import Conflict, Forbidden, InputError
from takedown.policy import measures, spec
from takedown.store.db import Database
from takedown.store.schema import Approval, Event, Measure
from tests import staff
from tests.policy.dbdata import add_platform, load_2021, load_stubborn

ROOT = Path(__file__).resolve().parents[2]
RU_2021 = ROOT / "examples" / "ladders" / "ru-2021.toml"


def d(month: int, day: int) -> datetime:
    return datetime(2021, month, day, tzinfo=UTC)


def rows(db: Database) -> list[Measure]:
    with db.reading() as s:
        return list(s.scalars(select(Measure).order_by(Measure.id)))


def test_2021_timeline_on_the_database(db: Database) -> None:
    ladder = spec.load(RU_2021)
    end = d(6, 8)
    load_2021(db, end, scale=10)
    clock = SimClock(d(3, 1))
    while clock.now() <= end:
        measures.run(db, ladder, clock.now(), "ladder-bot", apply=True)
        clock.advance(timedelta(days=1))
    m = rows(db)
    assert [(x.action, x.rate_kbps, x.classes, x.scope) for x in m] == [
        ("throttle", 128, ["media"], {"mobile": 100.0, "fixed": 50.0}),
        ("throttle", 128, ["media"], {"mobile": 100.0}),
    ]
    first, second = m
    assert (first.starts_at, first.lifted_at, first.state) == (d(3, 10), d(5, 17), "lifted")
    assert first.review_at == d(6, 14)  # renewed on 5 April (to 15 May) and 5 May
    assert first.figures["read"]["overdue"] == 317
    assert first.rule == "slowdown" and first.ladder == ladder.label
    assert second.supersedes_id == first.id
    assert (second.starts_at, second.lifted_at, second.state) == (d(5, 17), d(6, 3), "lifted")
    assert second.figures["fired"] == "lift-fixed"
    assert second.figures["snapshot"]["remaining"] == 56
    assert 0.9 <= second.figures["read"]["removed_share"] < 0.91
    with db.reading() as s:
        types = [(e.at, e.type) for e in s.scalars(select(Event).order_by(Event.seq))]
    assert types == [
        (d(3, 10), "measure.active"),
        (d(4, 5), "measure.renewed"),
        (d(5, 5), "measure.renewed"),
        (d(5, 17), "measure.changed"),
        (d(6, 3), "measure.lifted"),
    ]
    # in force by date
    at = {x.id: x.state for x in measures.list_measures(db, at=d(5, 1))}
    assert at == {first.id: "active"}
    at = {x.id: x.state for x in measures.list_measures(db, at=d(5, 20))}
    assert at == {first.id: "lifted", second.id: "active"}
    # the simulator, over the same facts, gives the same course without writing anything
    sim = measures.simulate(db, ladder, d(3, 1), end)["twitter"]
    kinds = [(r.now, p.kind.value, p.rule) for r in sim for p in r.proposals]
    assert kinds == [
        (d(3, 10), "start", "slowdown"),
        (d(4, 5), "renew", "slowdown"),
        (d(5, 5), "renew", "slowdown"),
        (d(5, 17), "change", "lift-fixed"),
        (d(6, 3), "lift", "lift-mobile"),
    ]
    assert len(rows(db)) == 2


def test_explain_shows_rule_figures_decisions_and_events(db: Database) -> None:
    ladder = spec.load(RU_2021)
    load_2021(db, d(3, 12))
    measures.run(db, ladder, d(3, 10), "ladder-bot", apply=True)
    (m,) = rows(db)
    info = measures.explain(db, m.id)
    assert info.measure.rule == "slowdown" and info.measure.figures["read"]["overdue"] == 3168
    basis = info.legal_basis
    assert basis.items == 6200
    assert basis.by_category == {
        "csam": 1550,
        "drugs": 1550,
        "minors-protest": 1550,
        "suicide": 1550,
    }
    refs = {x.decision for x in basis.decisions}
    assert "RKN-backlog-0" in refs and "RKN-early-6" in refs
    assert sum(x.items for x in basis.decisions) == 6200
    assert [e.type for e in info.events] == ["measure.active"]


def test_never_complying_block_waits_for_a_second_person(db: Database) -> None:
    ladder = spec.load(RU_2021)
    load_stubborn(db)
    for day in range(42):
        measures.run(db, ladder, d(3, 10) + timedelta(days=day), "alice", apply=True)
    block = [m for m in rows(db) if m.action == "block"]
    assert len(block) == 1
    b = block[0]
    assert (b.state, b.proposed_at, b.needs_approval) == ("proposed", d(4, 9), True)
    assert b.figures["read"]["removed_share_change(14)"] == 0
    slow = [m for m in rows(db) if m.rule == "slowdown"]
    assert [m.state for m in slow] == ["active"]
    alice = staff.account(db, "alice", "analyst", "approver", now=d(4, 20))
    bob = staff.account(db, "bob", "approver", now=d(4, 20))
    carol = staff.account(db, "carol", "approver", now=d(4, 20))
    with pytest.raises(Forbidden, match=r"alice proposed measure \d+; four eyes"):
        measures.approve(db, b.id, alice, d(4, 21))
    approved = measures.approve(db, b.id, bob, d(4, 21))
    assert (approved.state, approved.platform) == ("active", "stubborn")
    measures.run(db, ladder, d(4, 22), "alice", apply=True)
    states = {m.rule: m.state for m in rows(db)}
    assert states == {"slowdown": "lifted", "block": "active"}
    with db.reading() as s:
        assert [(a.by, a.at) for a in s.scalars(select(Approval))] == [("bob", d(4, 21))]
    with pytest.raises(Conflict, match="bob already approved"):
        measures.approve(db, b.id, bob, d(4, 22))
    with pytest.raises(Conflict, match="is active; there is nothing to approve"):
        measures.approve(db, b.id, carol, d(4, 22))
    assert measures.explain(db, b.id).as_json()["approvals"] == [{"by": "bob", "at": d(4, 21)}]


def test_linkedin_obligation_block(db: Database) -> None:
    ladder = spec.load(RU_2021)
    add_platform(db, "linkedin", {"linkedin.com": "text", "*.licdn.com": "media"})
    now = datetime(2016, 11, 17, tzinfo=UTC)
    assert measures.run(db, ladder, now, "alice", apply=True) == ([], [])
    measures.set_obligation(
        db,
        "linkedin",
        "data-localisation",
        "violating",
        "Moscow Tagansky court 2-3024/16",
        now,
        "alice",
    )
    proposals, _ids = measures.run(db, ladder, now + timedelta(hours=1), "alice", apply=True)
    assert [(p.rule, p.action.value) for p in proposals] == [("localisation-block", "block")]
    (m,) = rows(db)
    assert (m.state, m.classes, m.scope) == ("proposed", [], {"mobile": 100.0, "fixed": 100.0})
    measures.approve(
        db, m.id, staff.account(db, "bob", "approver", now=now), now + timedelta(hours=2)
    )
    info = measures.explain(db, m.id)
    assert info.as_json()["obligations"] == [
        {
            "kind": "data-localisation",
            "state": "violating",
            "decision": "Moscow Tagansky court 2-3024/16",
            "at": now,
        }
    ]
    with pytest.raises(InputError):
        measures.set_obligation(db, "linkedin", "data-localisation", "bad", "X", now, "a")
    with pytest.raises(InputError):
        measures.set_obligation(db, "linkedin", "taxes", "violating", "X", now, "a")


def test_measures_by_decision(db: Database) -> None:
    add_platform(db, "twitter", {"*.twimg.com": "media"})
    now = d(3, 10)
    tid = measures.add(
        db,
        "twitter",
        action="throttle",
        rate_kbps=128,
        classes=["media"],
        scope={"mobile": 100, "fixed": 50},
        decision="RKN-2021-03-10",
        reason="demands ignored",
        now=now,
        actor="alice",
        expires=d(4, 15),
    )
    bid = measures.add(
        db, "twitter", action="block", decision="RKN-B", reason="test", now=now, actor="alice"
    )
    t, b = rows(db)
    assert (t.state, t.decision_ref, t.rule, t.expires_at) == (
        "active",
        "RKN-2021-03-10",
        None,
        d(4, 15),
    )
    assert (b.state, b.needs_approval) == ("proposed", True)
    alice = staff.account(db, "alice", "approver", now=now)
    with pytest.raises(Forbidden, match="four eyes"):
        measures.approve(db, bid, alice, now)
    with pytest.raises(Forbidden, match="bootstrap"):
        measures.approve(db, bid, staff.BOOTSTRAP, now)
    measures.approve(db, bid, staff.account(db, "bob", "approver", now=now), now)
    measures.lift(db, tid, "RKN-2021-05-17", d(5, 17), "alice")
    t, b = rows(db)
    assert (t.state, t.lifted_at, t.lift_decision) == ("lifted", d(5, 17), "RKN-2021-05-17")
    with pytest.raises(Conflict):
        measures.lift(db, tid, "again", d(5, 18), "alice")
    # a ladder leaves a decision's measures alone
    ladder = spec.load(RU_2021)
    assert measures.run(db, ladder, d(5, 18), "x", apply=True) == ([], [])
    info = measures.explain(db, tid)
    assert [e.type for e in info.events] == ["measure.active", "measure.lifted"]
    assert info.measure.decision_ref == "RKN-2021-03-10"


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"action": "throttle"}, "--rate-kbps"),
        ({"action": "block", "rate_kbps": 5}, "--rate-kbps"),
        ({"action": "throttle", "rate_kbps": 128, "scope": {"mobile": 150}}, "--mobile"),
        ({"action": "melt"}, "--action"),
        ({"action": "block", "decision": " "}, "--decision"),
    ],
)
def test_measures_by_decision_bad_input(db: Database, kwargs: dict, where: str) -> None:
    add_platform(db, "twitter")
    args = {"decision": "D", "reason": "r", "now": d(3, 10), "actor": "a", **kwargs}
    with pytest.raises(InputError) as info:
        measures.add(db, "twitter", **args)
    assert info.value.where == where
    assert rows(db) == []


def test_expiry_without_renewal(db: Database) -> None:
    add_platform(db, "p")
    mid = measures.add(
        db,
        "p",
        action="throttle",
        rate_kbps=64,
        decision="D",
        reason="r",
        now=d(1, 1),
        actor="a",
        expires=d(1, 10),
    )
    assert measures.expire_due(db, d(1, 9), "a") == []
    assert measures.expire_due(db, d(1, 10), "a") == [mid]
    assert rows(db)[0].state == "expired"
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 2
