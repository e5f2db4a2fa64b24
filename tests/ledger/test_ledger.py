"""The ledger core (pure, explicit ``now``) and its agreement with the SQL fast path."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update
from verify.fixtures import add_items, add_notice, add_response

from takedown import ledger
from takedown.clock import SimClock
from takedown.ledger import CheckFact, ItemFact, LedgerFacts, ResponseFact
from takedown.model import Figures
from takedown.store.db import Database
from takedown.store.schema import Check, Item, VantagePoint

T0 = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def item(i: int, *, noticed: datetime | None = T0, cat: str = "suicide", **kw: object) -> ItemFact:
    deadline = noticed + 24 * H if noticed else None
    return ItemFact(i, "twitter", cat, T0 - H, noticed_at=noticed, deadline_at=deadline, **kw)


def test_removed_share_remaining_claimed_and_overdue() -> None:
    facts = LedgerFacts(
        items=[item(i) for i in range(1, 11)],
        responses=[ResponseFact(i, "removed", T0 + 2 * H) for i in (1, 2, 3, 4)]
        + [ResponseFact(5, "rejected", T0 + 2 * H)],
        checks=[
            CheckFact(1, "removed", T0 + 3 * H),
            CheckFact(2, "restricted", T0 + 30 * H),
            CheckFact(3, "available", T0 + 3 * H),  # the claim was false
            CheckFact(6, "removed", T0 + 5 * H),  # removed without saying so
            CheckFact(7, "restricted", T0 + 5 * H, in_country=False),  # abroad: ignored
            CheckFact(8, "unreachable", T0 + 5 * H),
        ],
    )
    clock = SimClock(T0 + 10 * H)
    f = ledger.figures_at(facts, "twitter", clock.now())
    assert (f.flagged, f.removed, f.restricted, f.claimed) == (10, 2, 0, 2)
    assert f.remaining == 8 and f.removed_share == 0.2 and f.overdue == 0
    assert f.on_time_share is None  # nothing due yet
    clock.advance(30 * H)  # T0 + 40h: every deadline (T0 + 24h) has passed
    f = ledger.figures_at(facts, "twitter", clock.now())
    assert (f.removed, f.restricted, f.claimed, f.remaining) == (2, 1, 1, 7)
    # open items 3, 5, 7, 8, 9, 10 are overdue; item 4's claim (T0+2h) was in time
    assert f.overdue == 6
    assert f.on_time_share == 2 / 10  # items 1 and 6 verified before T0 + 24h
    assert f.ttr_median_h == 5.0 and f.ttr_p90_h == 30.0  # ttr: 3h, 5h, 30h (nearest rank)


def test_claim_after_deadline_is_overdue() -> None:
    facts = LedgerFacts([item(1)], [ResponseFact(1, "removed", T0 + 25 * H)], [])
    f = ledger.figures_at(facts, "twitter", T0 + 26 * H)
    assert (f.claimed, f.overdue) == (1, 1)


def test_reopened_item_counts_again_with_unchanged_deadline() -> None:
    facts = LedgerFacts(
        [item(1)],
        [ResponseFact(1, "removed", T0 + H)],
        [CheckFact(1, "removed", T0 + 2 * H), CheckFact(1, "available", T0 + 50 * H)],
    )
    before = ledger.figures_at(facts, "twitter", T0 + 49 * H)
    after = ledger.figures_at(facts, "twitter", T0 + 51 * H)
    assert (before.removed, before.overdue, before.on_time_share) == (1, 0, 1.0)
    assert (after.removed, after.remaining, after.overdue) == (0, 1, 1)
    assert after.on_time_share == 1.0  # it was removed in time; the reappearance is counted
    assert ledger.reopened_count(facts, "twitter", T0 + 51 * H) == 1
    assert after.ttr_median_h == 2.0  # time to the first verified removal stays


def test_delisted_item_leaves_the_figures_from_its_delisting() -> None:
    facts = LedgerFacts([item(1), item(2, delisted_at=T0 + 5 * H)], [], [])
    assert ledger.figures_at(facts, "twitter", T0 + 4 * H).flagged == 2
    f = ledger.figures_at(facts, "twitter", T0 + 5 * H)
    assert (f.flagged, f.remaining) == (1, 1)


def test_facts_after_now_are_ignored_and_items_not_yet_listed_too() -> None:
    facts = LedgerFacts(
        [item(1), ItemFact(2, "twitter", "drugs", T0 + 10 * H)],
        [],
        [CheckFact(1, "removed", T0 + 5 * H)],
    )
    f = ledger.figures_at(facts, "twitter", T0 + 4 * H)
    assert (f.flagged, f.removed) == (1, 0)


def test_daily_series_and_categories() -> None:
    facts = LedgerFacts(
        [item(1), item(2, cat="drugs"), item(3, cat="drugs")],
        [],
        [CheckFact(1, "removed", T0 + 20 * H), CheckFact(2, "removed", T0 + 44 * H)],
    )
    series = ledger.daily_series(facts, "twitter", T0, T0 + timedelta(days=3))
    assert [s.removed for s in series] == [0, 1, 2, 2]
    assert [s.as_of for s in series] == [T0 + timedelta(days=d) for d in range(4)]
    cats = ledger.figures_by_category(facts, "twitter", T0 + timedelta(days=3))
    assert [(c.category, c.flagged, c.removed) for c in cats] == [
        ("drugs", 2, 1),
        ("suicide", 1, 1),
    ]
    assert ledger.figures_at(facts, "other", T0).flagged == 0


def test_shares_are_derived_from_counts() -> None:
    f = ledger.make_figures(
        "twitter",
        T0,
        flagged=6200,
        removed=5400,
        restricted=237,
        claimed=3,
        overdue=0,
        due=0,
        on_time=0,
    )
    assert f.remaining == 563 and round(f.removed_share, 3) == 0.909
    assert (
        ledger.make_figures(
            "x", T0, flagged=0, removed=0, restricted=0, claimed=0, overdue=0, due=0, on_time=0
        ).removed_share
        is None
    )


@given(
    st.lists(
        st.tuples(
            st.integers(1, 5),
            st.sampled_from(
                [
                    "response:removed",
                    "response:restricted",
                    "response:rejected",
                    "check:available",
                    "check:removed",
                    "check:restricted",
                    "check:error",
                    "abroad:removed",
                ]
            ),
            st.integers(0, 100),
        ),
        max_size=40,
    ),
    st.integers(0, 120),
)
@settings(max_examples=200, deadline=None)
def test_invariants(events: list[tuple[int, str, int]], hours: int) -> None:
    responses, checks = [], []
    for i, ev, h in events:
        kind, _, value = ev.partition(":")
        if kind == "response":
            responses.append(ResponseFact(i, value, T0 + h * H))
        else:
            checks.append(CheckFact(i, value, T0 + h * H, in_country=kind == "check"))
    facts = LedgerFacts([item(i) for i in range(1, 6)], responses, checks)
    f = ledger.figures_at(facts, "twitter", T0 + hours * H)
    assert f.flagged == 5
    assert f.removed + f.restricted + f.claimed <= f.flagged
    assert f.remaining == f.flagged - f.removed - f.restricted
    assert 0 <= f.overdue <= f.remaining
    if f.ttr_median_h is not None:
        assert 0 <= f.ttr_median_h <= f.ttr_p90_h


# ---------------------------------------------------------------- database: both paths agree


def _comparable(f: Figures) -> tuple:
    return (
        f.flagged,
        f.removed,
        f.restricted,
        f.claimed,
        f.remaining,
        f.overdue,
        f.removed_share,
        f.on_time_share,
        None if f.ttr_median_h is None else round(f.ttr_median_h, 6),
        None if f.ttr_p90_h is None else round(f.ttr_p90_h, 6),
        f.category,
    )


def check_round(
    db: Database, rng: random.Random, ids: list[int], at: datetime, abroad: int
) -> None:
    """Checks written with their projection, as the runner writes them."""
    batch = [
        (i, rng.choice(["available", "removed", "restricted", "error"]), at)
        for i in rng.sample(ids, 250)
    ]
    with db.session() as s:
        s.execute(insert(Check), [{"item_id": i, "verdict": v, "at": a} for i, v, a in batch])
        ledger.apply_checks(s, batch, in_country=True)
        rows = [
            {"item_id": i, "verdict": "available", "at": at, "vantage_id": abroad} for i in ids[:50]
        ]
        s.execute(insert(Check), rows)


def test_fast_path_and_facts_agree_and_rebuild_restores(db: Database) -> None:
    rng = random.Random(7)
    ids = add_items(db, 300, "http://127.0.0.1:9", category="suicide")
    ids += add_items(db, 100, "http://127.0.0.1:9", category="drugs", start=300)
    ids += add_items(db, 50, "http://127.0.0.1:9", platform="vk", start=400)
    abroad = VantagePoint(name="de", country="DE", in_country=False)
    with db.session() as s:
        s.add(abroad)
    add_notice(db, ids[:200], T0)
    add_notice(db, ids[200:400], T0 + 20 * H)
    add_notice(db, ids[400:], T0, platform="vk")
    # facts arrive in time order: responses at random hours, three check rounds
    responses = [
        (T0 + rng.randint(1, 40) * H, i, rng.choice(["removed", "restricted", "rejected"]))
        for i in rng.sample(ids, 150)
    ]
    rounds = [T0 + (10 + 20 * rnd) * H for rnd in range(3)]
    for at, i, action in sorted(responses):
        while rounds and rounds[0] < at:
            check_round(db, rng, ids, rounds.pop(0), abroad.id)
        add_response(db, i, action, at, platform="vk" if i in ids[400:] else "twitter")
    while rounds:
        check_round(db, rng, ids, rounds.pop(0), abroad.id)
    with db.session() as s:  # a delisting
        s.execute(
            update(Item)
            .where(Item.id.in_(ids[:10]))
            .values(delisted_at=T0 + 45 * H, state="delisted", state_at=T0 + 45 * H)
        )
    now = T0 + 80 * H
    with db.reading() as s:
        for platform in ("twitter", "vk"):
            for by_cat in (False, True):
                fast = ledger.status_fast(s, platform, now, by_category=by_cat)
                pure = ledger.status_from_facts(s, platform, now, by_category=by_cat)
                assert [_comparable(f) for f in fast] == [_comparable(f) for f in pure]
        tw = ledger.status_fast(s, "twitter", now)[0]
    assert tw.flagged == 390 and tw.removed > 0 and tw.overdue > 0 and tw.ttr_median_h
    # corrupt the projection; rebuild restores it
    with db.session() as s:
        before = dict(s.execute(select(Item.id, Item.state)).all())
        s.execute(update(Item).values(state="open", verified_at=None, ttr_s=None))
    with db.session() as s:
        changed = ledger.rebuild(s, now)
    with db.reading() as s:
        assert dict(s.execute(select(Item.id, Item.state)).all()) == before
        assert _comparable(ledger.status_fast(s, "twitter", now)[0]) == _comparable(tw)
    assert changed > 100
    with db.session() as s:  # a rebuild of a correct projection changes nothing
        assert ledger.rebuild(s, now) == 0


def test_fast_path_takes_off_items_outside_the_register(db: Database) -> None:
    """Items listed after ``now`` and delisted ones leave every figure, the TTR quantiles too
    (the fast path counts all the platform's items, then subtracts these)."""
    ids = add_items(db, 40, "http://127.0.0.1:9")
    later = add_items(db, 5, "http://127.0.0.1:9", listed_at=T0 + 100 * H, start=40)
    other = add_items(db, 7, "http://127.0.0.1:9", platform="vk", start=45)
    add_notice(db, ids, T0)
    add_notice(db, other, T0, platform="vk")
    with db.session() as s:  # removals found at 2h, 4h, … 38h (the deadline is T0 + 24h)
        batch = [(i, "removed", T0 + 2 * (k + 1) * H) for k, i in enumerate(ids[:19])]
        batch += [(i, "restricted", T0 + 3 * H) for i in other[:3]]
        s.execute(insert(Check), [{"item_id": i, "verdict": v, "at": a} for i, v, a in batch])
        ledger.apply_checks(s, batch, in_country=True)
    for k, i in enumerate(ids[20:30]):  # claims at 20h … 29h: the late ones stay overdue
        add_response(db, i, "removed", T0 + (20 + k) * H)
    now = T0 + 50 * H

    def agree(platform: str | None) -> Figures:
        with db.reading() as s:
            fast = ledger.status_fast(s, platform, now)
            pure = ledger.status_from_facts(s, platform, now)
        assert [_comparable(f) for f in fast] == [_comparable(f) for f in pure]
        return fast[0]

    f = agree("twitter")
    assert (f.flagged, f.removed, f.claimed, f.overdue) == (40, 19, 10, 11 + 5)
    assert f.ttr_median_h == 20.0 and f.on_time_share == 12 / 40  # verified by 24h
    assert agree(None).flagged == 47
    # delisting three removed items (their TTRs 2h, 4h, 6h leave the quantiles)
    with db.session() as s:
        s.execute(
            update(Item)
            .where(Item.id.in_(ids[:3]))
            .values(delisted_at=T0 + 45 * H, state="delisted", state_at=T0 + 45 * H)
        )
    f = agree("twitter")
    assert (f.flagged, f.removed, f.ttr_median_h) == (37, 16, 22.0)
    assert agree(None).flagged == 44
    assert later  # listed after now: never counted
