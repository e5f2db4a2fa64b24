"""Ladder evaluation (pure): the 2021 timeline, blocks, obligations, hysteresis, renewal."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from takedown.model import Figures, MeasureAction, MeasureState
from takedown.policy import spec
from takedown.policy.evaluate import (
    MeasureView,
    ProposalKind,
    Step,
    evaluate,
    replay,
)
from tests.policy.scenario import DAY, figures_2021, never_complying, steps_2021

ROOT = Path(__file__).resolve().parents[2]
RU_2021 = ROOT / "examples" / "ladders" / "ru-2021.toml"


def d(month: int, day: int) -> datetime:
    return datetime(2021, month, day, tzinfo=UTC)


def test_2021_timeline_every_measure_date_and_scope() -> None:
    ladder = spec.load(RU_2021)
    results = replay(ladder, steps_2021())
    events = [
        (r.now, p.kind, p.rule, dict(p.scope), p.review_at) for r in results for p in r.proposals
    ]
    assert events == [
        (d(3, 10), ProposalKind.START, "slowdown", {"mobile": 100.0, "fixed": 50.0}, d(4, 15)),
        (d(4, 5), ProposalKind.RENEW, "slowdown", {"mobile": 100.0, "fixed": 50.0}, d(5, 15)),
        (d(5, 5), ProposalKind.RENEW, "slowdown", {"mobile": 100.0, "fixed": 50.0}, d(6, 14)),
        (d(5, 17), ProposalKind.CHANGE, "lift-fixed", {"mobile": 100.0}, d(6, 14)),
        (d(6, 3), ProposalKind.LIFT, "lift-mobile", {}, d(6, 14)),
    ]
    start = results[9].proposals[0]
    assert start.action == MeasureAction.THROTTLE
    assert start.rate_kbps == 128
    assert start.classes == ("media",)
    assert not start.needs_approval
    # what the slowdown's condition and the lift rules' conditions read
    assert start.figures["overdue"] == 3168
    assert start.figures["remaining"] == 3168
    assert start.figures["removed_share"] < 0.9
    change = next(p for r in results for p in r.proposals if p.kind == ProposalKind.CHANGE)
    assert change.figures["removed_share"] >= 0.9
    assert change.snapshot["remaining"] == 563
    # what is in force, day by day
    by_day = {r.now: r.measures for r in results}
    assert by_day[d(3, 9)] == ()
    assert [dict(m.scope) for m in by_day[d(5, 16)]] == [{"mobile": 100.0, "fixed": 50.0}]
    assert [dict(m.scope) for m in by_day[d(5, 17)]] == [{"mobile": 100.0}]
    assert [dict(m.scope) for m in by_day[d(6, 2)]] == [{"mobile": 100.0}]
    assert by_day[d(6, 3)] == ()
    # no block at any point, though the block rule was checked daily from 9 April
    assert all(m.action == MeasureAction.THROTTLE for r in results for m in r.measures)


def test_2021_days_in_force_counts_from_first_start_across_changes() -> None:
    ladder = spec.load(RU_2021)
    results = replay(ladder, steps_2021(end=d(5, 20)))
    views = results[-1].measures
    assert len(views) == 1 and views[0].origin_at == d(3, 10)


def test_never_complying_platform_gets_block_proposal_that_waits_for_approval() -> None:
    ladder = spec.load(RU_2021)
    start = d(3, 10)
    results = replay(ladder, never_complying(60, start))
    kinds = [(r.now, p.kind, p.rule) for r in results for p in r.proposals]
    assert kinds[0] == (start, ProposalKind.START, "slowdown")
    block = [(t, k) for t, k, rule in kinds if rule == "block"]
    assert block[0] == (start + 30 * DAY, ProposalKind.START)
    proposal = next(p for r in results for p in r.proposals if p.rule == "block")
    assert proposal.needs_approval and proposal.action == MeasureAction.BLOCK
    assert proposal.figures["removed_share_change(14)"] == 0
    # not approved: the block stays proposed, the slowdown stays active
    last = results[-1].measures
    assert {(m.rule, m.state) for m in last} == {
        ("slowdown", MeasureState.ACTIVE),
        ("block", MeasureState.PROPOSED),
    }


def test_approved_block_replaces_slowdown() -> None:
    ladder = spec.load(RU_2021)
    results = replay(ladder, never_complying(40, d(3, 10)), approve=True)
    lift = [p for r in results for p in r.proposals if p.kind == ProposalKind.LIFT]
    assert [(p.measure_rule, p.rule, p.at) for p in lift] == [
        ("slowdown", "block", d(3, 10) + 31 * DAY)
    ]
    assert {m.rule for m in results[-1].measures} == {"block"}


def test_no_block_while_removals_progress_even_if_slow_to_finish() -> None:
    ladder = spec.load(RU_2021)
    steps = []
    for day in range(80):
        now = d(3, 10) + day * DAY
        remaining = 1000 - 5 * day  # 0.5 points a day: 7% over 14 days
        fig = Figures(
            "p",
            now,
            flagged=1000,
            removed=1000 - remaining,
            remaining=remaining,
            overdue=remaining,
            removed_share=(1000 - remaining) / 1000,
        )
        steps.append(Step(now, fig))
    results = replay(ladder, steps)
    assert not any(p.rule == "block" for r in results for p in r.proposals)


def test_linkedin_rule_blocks_from_an_obligation() -> None:
    ladder = spec.load(RU_2021)
    now = d(11, 17)
    fig = Figures("linkedin", now, flagged=0)
    proposals = evaluate(ladder, fig, [], [], {"data-localisation": "violating"}, now)
    assert [(p.kind, p.rule, p.action, p.needs_approval) for p in proposals] == [
        (ProposalKind.START, "localisation-block", MeasureAction.BLOCK, True)
    ]
    assert proposals[0].figures == {'obligation("data-localisation")': "violating"}
    assert proposals[0].scope == {"mobile": 100.0, "fixed": 100.0}
    assert proposals[0].classes == ()
    assert evaluate(ladder, fig, [], [], {"data-localisation": "compliant"}, now) == []
    assert evaluate(ladder, fig, [], [], {}, now) == []


HOVER = """
[ladder]
name = "hover"
min_change_period = "1d"
[[rule]]
name = "t"
when = "overdue > 0"
action = "throttle"
rate_kbps = 128
scope = { mobile = 100 }
[[rule]]
name = "off"
when = "overdue == 0"
action = "lift"
lifts = "t"
"""


def test_hysteresis_one_change_per_rule_per_period() -> None:
    ladder = spec.loads(HOVER)
    start = d(1, 1)
    steps = []
    for hour in range(24 * 5):
        now = start + timedelta(hours=hour)
        overdue = hour % 2  # flaps every hour
        steps.append(Step(now, Figures("p", now, flagged=10, overdue=overdue)))
    changes = [p.at for r in replay(ladder, steps) for p in r.proposals]
    assert len(changes) >= 4
    for a, b in itertools.pairwise(changes):
        assert b - a >= timedelta(days=1)


def test_without_hysteresis_period_it_would_flap() -> None:
    ladder = spec.loads(HOVER.replace('"1d"', '"1m"'))
    start = d(1, 1)
    steps = [
        Step(start + timedelta(hours=h), Figures("p", start + timedelta(hours=h), overdue=h % 2))
        for h in range(1, 11)
    ]
    assert len([p for r in replay(ladder, steps) for p in r.proposals]) == 10


def test_measure_expires_at_review_unless_renewed() -> None:
    text = HOVER.replace(
        "scope = { mobile = 100 }",
        'scope = { mobile = 100 }\nreview = "10d"\nrenew_when = "overdue > 5"',
    )
    ladder = spec.loads(text)
    steps = [Step(d(1, 1) + i * DAY, Figures("p", d(1, 1) + i * DAY, overdue=1)) for i in range(12)]
    results = replay(ladder, steps)
    assert [m.review_at for m in results[9].measures] == [d(1, 11)]
    # not renewed (overdue is not > 5): expired on 11 Jan; restarted as a new measure once
    # the hysteresis period after the expiry has passed
    assert results[10].proposals == () and results[10].measures == ()
    assert results[11].proposals[0].kind == ProposalKind.START
    assert results[11].measures[0].since == d(1, 12)


def test_unknown_share_does_not_fire() -> None:
    ladder = spec.loads(HOVER.replace("overdue > 0", "removed_share < 50%"))
    now = d(1, 1)
    assert evaluate(ladder, Figures("p", now), [], [], {}, now) == []


def test_decision_measures_are_not_touched_by_the_ladder() -> None:
    ladder = spec.load(RU_2021)
    now = d(6, 10)
    fig, recent = figures_2021(now)
    mine = MeasureView(
        id=7,
        platform="twitter",
        rule=None,
        action=MeasureAction.BLOCK,
        state=MeasureState.ACTIVE,
        since=d(6, 1),
        scope={"mobile": 100},
    )
    assert evaluate(ladder, fig, [], [mine], {}, now, recent=recent) == []
