"""Ladder evaluation: a pure function of (ladder, figures, history, measures, obligations, now).

It proposes what to start, renew, change or lift; it never writes. The database shell
(``policy.measures``) and the what-if simulator apply the proposals.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from takedown.model import Figures, MeasureAction, MeasureState
from takedown.policy import expr
from takedown.policy.expr import Node
from takedown.policy.spec import Ladder, Rule

DAY = timedelta(days=1)
IN_FORCE = (MeasureState.PROPOSED, MeasureState.ACTIVE)


class ProposalKind(StrEnum):
    START = "start"
    RENEW = "renew"
    CHANGE = "change"
    LIFT = "lift"


@dataclass(frozen=True)
class MeasureView:
    """What evaluation needs to know of a measure (in force, or recently ended).

    ``since`` is when this version was proposed or last changed; ``origin_at`` when the
    chain of versions first became active (None if never active); ``ended_at`` is set for
    lifted / expired measures, which only count for hysteresis.
    """

    id: int | None
    platform: str
    rule: str | None
    action: MeasureAction
    state: MeasureState
    since: datetime
    scope: Mapping[str, float]
    rate_kbps: int | None = None
    classes: tuple[str, ...] = ()
    origin_at: datetime | None = None
    review_at: datetime | None = None
    ended_at: datetime | None = None
    needs_approval: bool = False

    def in_force(self, now: datetime) -> bool:
        if self.ended_at is not None or self.state not in IN_FORCE:
            return False
        return self.review_at is None or now < self.review_at


@dataclass(frozen=True)
class Proposal:
    """One thing evaluation wants done, with the rule that fired and what it read."""

    kind: ProposalKind
    platform: str
    rule: str  # the rule that fired (a lift rule, a replacing rule, or the measure's own)
    measure_rule: str  # the rule that owns the measure
    action: MeasureAction
    scope: Mapping[str, float]
    at: datetime
    reason: str
    figures: Mapping[str, Any] = field(default_factory=dict)  # values the conditions read
    rate_kbps: int | None = None
    classes: tuple[str, ...] = ()
    review_at: datetime | None = None
    needs_approval: bool = False
    measure_id: int | None = None  # the measure renewed / changed / lifted
    snapshot: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scope"] = dict(self.scope)
        out["classes"] = list(self.classes)
        return out


def snapshot(figures: Figures) -> dict[str, Any]:
    """The figures as plain data (what a measure records beside the values read)."""
    out = {k: v for k, v in asdict(figures).items() if v is not None}
    out["as_of"] = figures.as_of.isoformat()
    return out


class _History:
    """Figures over time (sorted by as_of) for the change-over-N-days functions."""

    def __init__(self, history: Sequence[Figures]) -> None:
        self.items = sorted(history, key=lambda f: f.as_of)
        self.times = [f.as_of for f in self.items]

    def at(self, when: datetime) -> Figures | None:
        i = bisect.bisect_right(self.times, when)
        return self.items[i - 1] if i else None


class _Context:
    def __init__(
        self,
        figures: Figures,
        history: _History,
        measures: Sequence[MeasureView],
        obligations: Mapping[str, str],
        recent: Mapping[int, Figures],
        now: datetime,
    ) -> None:
        self.figures = figures
        self.history = history
        self.measures = measures
        self.obligations = obligations
        self.recent = recent
        self.now = now

    def resolve(self, node: Node) -> Any:
        if node.kind == "name":
            return getattr(self.figures, node.value)
        name = node.value
        args = [a.value for a in node.args]
        if name == "days_in_force":
            for m in self.measures:
                if m.rule == args[0] and m.state == MeasureState.ACTIVE and m.in_force(self.now):
                    return (self.now - (m.origin_at or m.since)) / DAY
            return 0
        if name == "removed_share_change":
            return self._change("removed_share", args[0])
        if name == "change":
            return self._change(args[0], args[1])
        if name == "new_items":
            f = self.recent.get(args[0])
            return None if f is None else f.flagged
        if name == "new_items_on_time_share":
            f = self.recent.get(args[0])
            return None if f is None else f.on_time_share
        if name == "obligation":
            return self.obligations.get(args[0], "none")
        raise AssertionError(f"unregistered function {name}")  # the parser refuses these

    def _change(self, figure: str, days: int) -> float | None:
        then = self.history.at(self.now - days * DAY)
        now_value = getattr(self.figures, figure)
        if then is None or now_value is None:
            return None
        then_value = getattr(then, figure)
        return None if then_value is None else now_value - then_value

    def holds(self, node: Node, reads: dict[str, Any]) -> bool:
        return expr.evaluate(node, self.resolve, reads) is True


def evaluate(
    ladder: Ladder,
    figures: Figures,
    history: Sequence[Figures],
    measures_in_force: Sequence[MeasureView],
    obligations: Mapping[str, str],
    now: datetime,
    *,
    recent: Mapping[int, Figures] | None = None,
) -> list[Proposal]:
    """Propose what the ladder wants for ``figures.platform`` at ``now``.

    ``history``: earlier figures of the platform (for change over N days); ``measures_in_force``:
    the platform's measures in force plus those ended within the hysteresis period;
    ``obligations``: kind -> state; ``recent``: N -> figures over items listed in the last N
    days (the windows ``ladder.windows()`` names).
    """
    ctx = _Context(figures, _History(history), measures_in_force, obligations, recent or {}, now)
    platform = figures.platform
    rules = ladder.rules_for(platform)
    snap = snapshot(figures)
    out: list[Proposal] = []
    for rule in rules:
        if not rule.is_measure:
            continue
        proposal = _evaluate_rule(ladder, rule, rules, ctx, platform, now)
        if proposal is not None:
            out.append(replace(proposal, snapshot=snap))
    return out


@dataclass(frozen=True)
class _Proposer:
    """Makes one rule's proposals at ``now``, with the figures read so far."""

    rule: Rule
    platform: str
    now: datetime
    reads: dict[str, Any]

    def __call__(
        self,
        kind: ProposalKind,
        fired: str,
        scope: Mapping[str, float],
        reason: str,
        review_at: datetime | None,
        measure_id: int | None = None,
    ) -> Proposal:
        rule = self.rule
        return Proposal(
            kind=kind,
            platform=self.platform,
            rule=fired,
            measure_rule=rule.name,
            action=rule.measure_action,
            scope=dict(scope),
            at=self.now,
            reason=reason,
            figures=dict(self.reads),
            rate_kbps=rule.rate_kbps,
            classes=rule.classes,
            review_at=review_at,
            needs_approval=rule.needs_approval,
            measure_id=measure_id,
        )


def _evaluate_rule(
    ladder: Ladder, rule: Rule, rules: Sequence[Rule], ctx: _Context, platform: str, now: datetime
) -> Proposal | None:
    """What one measure rule proposes now: start, lift, change, renew or nothing."""
    mine = [m for m in ctx.measures if m.rule == rule.name]
    current = max((m for m in mine if m.in_force(now)), key=lambda m: m.since, default=None)
    last_change = max(
        (t for m in mine for t in (m.since, m.ended_at) if t is not None and t <= now),
        default=None,
    )
    period = rule.min_change_period or ladder.min_change_period
    settled = last_change is None or now - last_change >= period

    propose = _Proposer(rule, platform, now, {})
    lifters: list[tuple[str, set[str]]] = []
    for lift in rules:
        if lift.lifts == rule.name and ctx.holds(lift.when, propose.reads):
            lifters.append((lift.name, set(lift.scope)))
    lifted = {c for _name, classes in lifters for c in classes}
    replaced_by = [
        r.name
        for r in rules
        if rule.name in r.replaces
        and any(
            m.rule == r.name and m.state == MeasureState.ACTIVE and m.in_force(now)
            for m in ctx.measures
        )
    ]

    if current is None:
        if replaced_by or not ctx.holds(rule.when, propose.reads):
            return None
        scope = {c: p for c, p in rule.scope.items() if c not in lifted}
        if not scope or not settled:
            return None
        return propose(
            ProposalKind.START,
            rule.name,
            scope,
            f"{rule.name}: {rule.when_text}",
            now + rule.review,
        )
    if replaced_by:
        return propose(
            ProposalKind.LIFT,
            replaced_by[0],
            {},
            f"replaced by {replaced_by[0]}",
            current.review_at,
            current.id,
        )
    return _evaluate_current(ladder, rule, ctx, current, propose, lifters, settled)


def _evaluate_current(
    ladder: Ladder,
    rule: Rule,
    ctx: _Context,
    current: MeasureView,
    propose: _Proposer,
    lifters: Sequence[tuple[str, set[str]]],
    settled: bool,
) -> Proposal | None:
    """A rule whose measure is in force: withdraw, narrow or lift, renew, or nothing."""
    now, reads = propose.now, propose.reads
    if current.state == MeasureState.PROPOSED and not ctx.holds(rule.when, reads):
        if not settled:
            return None
        return propose(
            ProposalKind.LIFT,
            rule.name,
            {},
            f"withdrawn before approval: no longer {rule.when_text}",
            current.review_at,
            current.id,
        )
    lifted = {c for _name, classes in lifters for c in classes}
    scope = {c: p for c, p in current.scope.items() if c not in lifted}
    if scope != dict(current.scope):
        if not settled:
            return None
        gone_set = set(current.scope) - set(scope)
        gone = ", ".join(sorted(gone_set))
        fired = ", ".join(name for name, classes in lifters if classes & gone_set)
        kind = ProposalKind.CHANGE if scope else ProposalKind.LIFT
        return propose(
            kind,
            fired,
            scope,
            f"{fired}: lifted for {gone} subscribers",
            current.review_at,
            current.id,
        )
    if (
        current.state == MeasureState.ACTIVE
        and current.review_at is not None
        and now >= current.review_at - ladder.renew_within
    ):
        cond = rule.renew_when or rule.when
        if ctx.holds(cond, reads):
            text = rule.when_text if rule.renew_when is None else _text(rule.renew_when)
            return propose(
                ProposalKind.RENEW,
                rule.name,
                scope,
                f"{rule.name} renewed: {text}",
                current.review_at + rule.renew,
                current.id,
            )
    return None


def _text(node: Node) -> str:
    text = node.text()
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


# --- the same proposals applied to in-memory views (what-if simulation, tests) -----------


def expire(views: Sequence[MeasureView], now: datetime) -> list[MeasureView]:
    """Views whose review_at has passed become expired (ended at review_at)."""
    out = []
    for v in views:
        if v.ended_at is None and v.state in IN_FORCE and v.review_at and now >= v.review_at:
            v = replace(v, state=MeasureState.EXPIRED, ended_at=v.review_at)
        out.append(v)
    return out


def apply_in_memory(
    views: Sequence[MeasureView], proposals: Sequence[Proposal], now: datetime, *, next_id: int
) -> tuple[list[MeasureView], int]:
    """Apply proposals as the database shell would (without approvals); return new views."""
    out = list(views)
    index = {v.id: i for i, v in enumerate(out)}
    for p in proposals:
        if p.kind == ProposalKind.START:
            state = MeasureState.PROPOSED if p.needs_approval else MeasureState.ACTIVE
            out.append(
                MeasureView(
                    id=next_id,
                    platform=p.platform,
                    rule=p.measure_rule,
                    action=p.action,
                    state=state,
                    since=now,
                    scope=dict(p.scope),
                    rate_kbps=p.rate_kbps,
                    classes=p.classes,
                    origin_at=now if state == MeasureState.ACTIVE else None,
                    review_at=p.review_at,
                    needs_approval=p.needs_approval,
                )
            )
            index[next_id] = len(out) - 1
            next_id += 1
            continue
        i = index[p.measure_id]
        old = out[i]
        if p.kind == ProposalKind.RENEW:
            out[i] = replace(old, review_at=p.review_at)
        elif p.kind == ProposalKind.LIFT:
            out[i] = replace(old, state=MeasureState.LIFTED, ended_at=now)
        else:
            out[i] = replace(old, state=MeasureState.LIFTED, ended_at=now)
            out.append(replace(old, id=next_id, since=now, scope=dict(p.scope)))
            index[next_id] = len(out) - 1
            next_id += 1
    return out, next_id


def approve_in_memory(
    views: Sequence[MeasureView], measure_id: int, now: datetime
) -> list[MeasureView]:
    """A proposed view becomes active at ``now`` (the simulator's stand-in for approval)."""
    return [
        replace(v, state=MeasureState.ACTIVE, origin_at=now, since=now)
        if v.id == measure_id and v.state == MeasureState.PROPOSED
        else v
        for v in views
    ]


@dataclass(frozen=True)
class Step:
    """The inputs of one evaluation in a replay."""

    now: datetime
    figures: Figures
    recent: Mapping[int, Figures] = field(default_factory=dict)
    obligations: Mapping[str, str] = field(default_factory=dict)
    history: tuple[Figures, ...] | None = None  # None: the figures of the earlier steps


@dataclass(frozen=True)
class StepResult:
    now: datetime
    proposals: tuple[Proposal, ...]
    measures: tuple[MeasureView, ...]  # in force after the step


def replay(
    ladder: Ladder,
    steps: Sequence[Step],
    *,
    measures: Sequence[MeasureView] = (),
    approve: bool = False,
) -> list[StepResult]:
    """Evaluate step by step, applying each step's proposals in memory (no database).

    ``approve``: proposals needing approval are taken as approved at once (to see the
    ladder's full course); otherwise they stay proposed.
    """
    views = list(measures)
    next_id = max((v.id or 0 for v in views), default=0) + 1
    history: list[Figures] = []
    out: list[StepResult] = []
    for step in steps:
        views = expire(views, step.now)
        earlier = history if step.history is None else step.history
        proposals = evaluate(
            ladder, step.figures, earlier, views, step.obligations, step.now, recent=step.recent
        )
        views, first_new = apply_in_memory(views, proposals, step.now, next_id=next_id)[0], next_id
        next_id = max((v.id or 0 for v in views), default=0) + 1
        if approve:
            for v in views:
                if v.state == MeasureState.PROPOSED and (v.id or 0) >= first_new:
                    views = approve_in_memory(views, v.id or 0, step.now)
        history.append(step.figures)
        out.append(
            StepResult(step.now, tuple(proposals), tuple(v for v in views if v.in_force(step.now)))
        )
    return out
