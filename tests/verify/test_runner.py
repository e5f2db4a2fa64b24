"""Rounds against a real loopback server on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from takedown import ledger
from takedown.clock import SimClock
from takedown.store.db import Database
from takedown.store.schema import Check, CheckRound, CheckTask, Event, Item
from takedown.verify import runner
from takedown.verify.probe import ProbeSettings
from takedown.verify.vantage import Vantage, add_vantage

from .fixtures import T0, add_items, add_notice, add_response
from .servers import ItemApp, UvicornThread

FAST = ProbeSettings(concurrency=20, connect_timeout=2, read_timeout=2, total_timeout=5, retries=1)


def opts(**kw: object) -> runner.RunOptions:
    return runner.RunOptions(settings=FAST, only_loopback=True, batch=7, flush_every=5, **kw)


def states(db: Database) -> dict[int, str]:
    with db.reading() as s:
        return dict(s.execute(select(Item.id, Item.state)).all())


def test_round_checks_every_item_once_and_projects_states(db: Database) -> None:
    app = ItemApp({1: "removed", 2: "withheld", 3: "gone", 4: "withheld-page", 5: "error"})
    clock = SimClock(T0 + timedelta(hours=2))
    with UvicornThread(app) as srv:
        ids = add_items(db, 30, f"http://127.0.0.1:{srv.port}")
        add_notice(db, ids, T0)
        add_response(db, ids[0], "removed", T0 + timedelta(hours=1))  # truthful claim
        add_response(db, ids[6], "removed", T0 + timedelta(hours=1))  # false claim
        summary = runner.run_round(db, opts(), clock=clock)
    assert summary.finished and summary.checked == 30 and not summary.resumed
    assert summary.verdicts == {"available": 25, "removed": 2, "restricted": 2, "error": 1}
    with db.reading() as s:
        per_item = dict(
            s.execute(select(Check.item_id, func.count()).group_by(Check.item_id)).all()
        )
        assert per_item == {i: 1 for i in ids}
        err = s.scalar(select(Check).where(Check.verdict == "error"))
        assert err.status == 500 and err.error == "HTTP 500" and len(err.digest) == 64
        rnd = s.scalar(select(CheckRound))
        assert rnd.finished_at == clock.now()
        types = s.scalars(select(Event.type)).all()
        assert "verify.round_started" in types and "verify.round_finished" in types
    st = states(db)
    assert [st[i] for i in ids[:7]] == [
        "open",  # path /s/0 is available: the claim was... (k=0 is available)
        "removed",
        "restricted",
        "removed",
        "restricted",
        "open",
        "open",  # false claim found available → back to open
    ]
    assert summary.reopened == 2  # both claims (/s/0 and /s/6) were found available
    with db.reading() as s:
        verified = s.execute(select(Item.verified_at, Item.ttr_s).where(Item.id == ids[1])).one()
    assert verified == (clock.now(), 2 * 3600.0)


def test_abroad_vantage_checks_do_not_change_state(db: Database) -> None:
    app = ItemApp({0: "withheld", 1: "removed"})
    abroad = add_vantage(db, Vantage("de-1", "DE", in_country=False), now=T0, actor="t")
    with UvicornThread(app) as srv:
        ids = add_items(db, 3, f"http://127.0.0.1:{srv.port}")
        summary = runner.run_round(db, opts(vantage=abroad), clock=SimClock(T0))
    assert summary.checked == 3 and summary.verdicts["restricted"] == 1
    assert set(states(db).values()) == {"open"}
    with db.reading() as s:
        assert set(s.scalars(select(Check.vantage_id)).all()) == {abroad.id}
    assert ids


def test_reopen_keeps_deadline_and_is_counted(db: Database) -> None:
    app = ItemApp({0: "removed"})
    clock = SimClock(T0 + timedelta(hours=3))
    with UvicornThread(app) as srv:
        ids = add_items(db, 1, f"http://127.0.0.1:{srv.port}")
        add_notice(db, ids, T0)
        runner.run_round(db, opts(), clock=clock)
        assert states(db)[ids[0]] == "removed"
        app.behaviour[0] = "available"  # the post reappears
        clock.advance(timedelta(hours=30))
        summary = runner.run_round(db, opts(), clock=clock)
    assert summary.reopened == 1 and states(db)[ids[0]] == "open"
    with db.reading() as s:
        item = s.get(Item, ids[0])
        assert item.deadline_at == T0 + timedelta(hours=24)
        assert item.verified_at == T0 + timedelta(hours=3)  # the first verification stays
        facts = ledger.load_facts(s)
    fig = ledger.figures_at(facts, "twitter", clock.now())
    assert (fig.removed, fig.remaining, fig.overdue) == (0, 1, 1)
    assert ledger.reopened_count(facts, "twitter", clock.now()) == 1


def test_only_open_skips_verified_items(db: Database) -> None:
    app = ItemApp({0: "removed"})
    with UvicornThread(app) as srv:
        add_items(db, 4, f"http://127.0.0.1:{srv.port}")
        runner.run_round(db, opts(), clock=SimClock(T0))
        summary = runner.run_round(db, opts(only_open=True), clock=SimClock(T0))
    assert summary.tasks == 3 and summary.checked == 3


def test_resume_finishes_round_without_duplicates(db: Database) -> None:
    """A round whose first tasks were done (and others claimed by a dead process) is
    finished by the next run, each item checked exactly once."""
    app = ItemApp()
    clock = SimClock(T0)
    with UvicornThread(app) as srv:
        ids = add_items(db, 25, f"http://127.0.0.1:{srv.port}")
        o = opts()
        rid, resumed, n = runner.open_round(db, o, clock.now())
        assert (resumed, n) == (False, 25)
        now = clock.now()
        # a process that died: claimed 7, its pid is gone (pid 2**22+1 does not exist)
        dead = f"{runner.socket.gethostname()}:{2**22 + 1}:abc"
        runner.claim(db, rid, dead, 7, now, now + timedelta(hours=1))
        # a live process did 5 and wrote them
        me = runner.worker_id()
        batch = runner.claim(db, rid, me, 5, now, now + timedelta(hours=1))
        from takedown.model import Verdict
        from takedown.verify.probe import ProbeResult

        runner.record(
            db,
            rid,
            me,
            o.vantage,
            [(t, i, ProbeResult(u, Verdict.AVAILABLE, 200), now) for t, i, u in batch],
            "t",
        )
        summary = runner.run_round(db, o, clock=clock)
    assert summary.resumed and summary.round_id == rid and summary.checked == 20
    with db.reading() as s:
        counts = dict(s.execute(select(Check.item_id, func.count()).group_by(Check.item_id)).all())
        assert counts == {i: 1 for i in ids}
        assert s.scalar(select(func.count()).where(CheckTask.done_at.is_(None))) == 0


def test_record_refuses_tasks_no_longer_ours(db: Database) -> None:
    from takedown.model import Verdict
    from takedown.verify.probe import ProbeResult

    ids = add_items(db, 2, "http://127.0.0.1:9")
    o = opts()
    rid, _, _ = runner.open_round(db, o, T0)
    a, b = "h:1:a", "h:2:b"
    got = runner.claim(db, rid, a, 2, T0, T0 + timedelta(seconds=1))
    # a's lease expires, b takes over and records first
    got_b = runner.claim(db, rid, b, 2, T0 + timedelta(seconds=5), T0 + timedelta(hours=1))
    assert [g[1] for g in got_b] == [g[1] for g in got] == ids
    res = [(t, i, ProbeResult(u, Verdict.AVAILABLE, 200), T0) for t, i, u in got]
    assert runner.record(db, rid, b, o.vantage, res, "t")[0] == 2
    assert runner.record(db, rid, a, o.vantage, res, "t")[0] == 0
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Check)) == 2


@pytest.mark.parametrize("n", [0])
def test_empty_round_finishes(db: Database, n: int) -> None:
    summary = runner.run_round(db, opts(), clock=SimClock(T0))
    assert summary.tasks == 0 and summary.finished
