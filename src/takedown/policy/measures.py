"""The measures shell: evaluate a ladder over the database, apply, approve, impose, lift.

Evaluation itself is pure (``policy.evaluate``); ``policy.inputs`` reads its inputs (ledger
figures, earlier figures, new-item windows, obligations, measures); this module writes
what it decides, each change with an audit event in the same transaction. Reading
measures back as records is ``policy.records`` (re-exported here for callers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.accounts import Actor, authorise
from takedown.errors import Conflict, Forbidden, InputError, NotFound
from takedown.model import MeasureAction, MeasureRecord, MeasureState
from takedown.policy.evaluate import (
    DAY,
    Proposal,
    ProposalKind,
    Step,
    StepResult,
    evaluate,
    replay,
    snapshot,
)
from takedown.policy.expr import OBLIGATION_KINDS
from takedown.policy.inputs import (
    FigureSource,
    obligation_history,
    obligations_of,
    platform_id,
    platforms,
    views_of,
)
from takedown.policy.records import explain, list_measures, measure_record, state_at
from takedown.policy.spec import SUBSCRIBER_CLASSES, Ladder
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Approval, Measure, Obligation, Platform

# The reading side lives in policy.records; these names stay importable from here.
__all__ = [
    "add",
    "approve",
    "evaluate_db",
    "expire_due",
    "explain",
    "four_eyes",
    "lift",
    "lift_in",
    "list_measures",
    "measure_record",
    "reject",
    "run",
    "set_obligation",
    "simulate",
    "state_at",
]

OBLIGATION_STATES = ("compliant", "violating")
ENDED = (MeasureState.LIFTED.value, MeasureState.EXPIRED.value)


# --- evaluation over the database -------------------------------------------------------


def evaluate_db(
    db: Database, ladder: Ladder, now: datetime, *, platform: str | None = None
) -> list[Proposal]:
    """What the ladder proposes for every platform (or one) at ``now``; writes nothing."""
    with db.reading() as session:
        return _evaluate_session(session, ladder, now, platform)


def _evaluate_session(
    session: Session, ladder: Ladder, now: datetime, platform: str | None
) -> list[Proposal]:
    plats = platforms(session, platform)
    source = FigureSource(session, list(plats.values()), now)
    obligations = obligations_of(session, list(plats))
    views = views_of(session, list(plats))
    out: list[Proposal] = []
    for pid, slug in plats.items():
        inp = source.inputs(ladder, slug, now, obligations.get(pid, {}))
        out.extend(
            evaluate(
                ladder,
                inp.figures,
                inp.history,
                views.get(pid, []),
                inp.obligations,
                now,
                recent=inp.recent,
            )
        )
    return out


def run(
    db: Database,
    ladder: Ladder,
    now: datetime,
    actor: str,
    *,
    apply: bool = False,
    platform: str | None = None,
) -> tuple[list[Proposal], list[int]]:
    """Evaluate; with ``apply`` expire what is due and write the proposals in one
    transaction. Returns the proposals and the ids of the measures written."""
    if not apply:
        return evaluate_db(db, ladder, now, platform=platform), []
    with db.session() as session:
        _expire(session, now, actor)
        proposals = _evaluate_session(session, ladder, now, platform)
        ids = _apply(session, ladder, proposals, now, actor)
    return proposals, ids


def _figures_json(p: Proposal) -> dict[str, Any]:
    return {"fired": p.rule, "read": dict(p.figures), "snapshot": dict(p.snapshot)}


def _open(session: Session, m: Measure, now: datetime, actor: str, payload: dict[str, Any]) -> None:
    """Store a new measure (active at once, or proposed if it needs approval) and its event.

    The one path for ladder-made and decided measures, so both read the same in the log.
    """
    state = MeasureState.PROPOSED if m.needs_approval else MeasureState.ACTIVE
    m.state, m.proposed_at, m.created_by = state.value, now, actor
    m.starts_at = now if state == MeasureState.ACTIVE else None
    session.add(m)
    session.flush()
    audit.record(
        session,
        at=now,
        actor=actor,
        type=f"measure.{state.value}",
        payload={
            **payload,
            "measure_id": m.id,
            "action": m.action,
            "scope": m.scope,
            "rate_kbps": m.rate_kbps,
            "classes": m.classes,
        },
    )


def _apply(
    session: Session, ladder: Ladder, proposals: Sequence[Proposal], now: datetime, actor: str
) -> list[int]:
    """Write each proposal (start, renew, lift, change); the ids of the measures written."""
    pids = {slug: pid for pid, slug in session.execute(select(Platform.id, Platform.slug))}
    ids: list[int] = []
    for p in proposals:
        base = {
            "platform": p.platform,
            "rule": p.rule,
            "measure_rule": p.measure_rule,
            "ladder": ladder.label,
            "figures": dict(p.figures),
            "reason": p.reason,
        }
        if p.kind == ProposalKind.START:
            ids.append(_start(session, ladder, p, pids[p.platform], now, actor, base))
            continue
        m = session.get(Measure, p.measure_id)
        if m is None:  # pragma: no cover - proposals come from the same transaction
            raise NotFound(f"measure {p.measure_id} vanished")
        if p.kind == ProposalKind.RENEW:
            m.review_at = m.expires_at = p.review_at
            ids.append(m.id)
            _event(session, now, actor, "renewed", {**base, "measure_id": m.id}, p.review_at)
        elif p.kind == ProposalKind.LIFT:
            m.state, m.lifted_at = MeasureState.LIFTED.value, now
            ids.append(m.id)
            _event(session, now, actor, "lifted", {**base, "measure_id": m.id})
        else:
            ids.append(_change(session, ladder, p, m, now, actor, base))
    return ids


def _event(
    session: Session,
    now: datetime,
    actor: str,
    what: str,
    payload: dict[str, Any],
    review_at: datetime | None = None,
) -> None:
    if review_at is not None:
        payload["review_at"] = review_at
    audit.record(session, at=now, actor=actor, type=f"measure.{what}", payload=payload)


def _start(
    session: Session,
    ladder: Ladder,
    p: Proposal,
    pid: int,
    now: datetime,
    actor: str,
    base: dict[str, Any],
) -> int:
    """A new ladder-made measure."""
    m = Measure(
        platform_id=pid,
        action=p.action.value,
        rate_kbps=p.rate_kbps,
        classes=list(p.classes),
        scope=dict(p.scope),
        review_at=p.review_at,
        expires_at=p.review_at,
        rule=p.measure_rule,
        ladder=ladder.label,
        figures=_figures_json(p),
        reason=p.reason,
        needs_approval=p.needs_approval,
    )
    _open(session, m, now, actor, {**base, "review_at": m.review_at})
    return m.id


def _change(
    session: Session,
    ladder: Ladder,
    p: Proposal,
    m: Measure,
    now: datetime,
    actor: str,
    base: dict[str, Any],
) -> int:
    """Lift ``m`` and start its successor with the proposal's scope, active at once."""
    m.state, m.lifted_at = MeasureState.LIFTED.value, now
    new = Measure(
        platform_id=m.platform_id,
        action=m.action,
        rate_kbps=m.rate_kbps,
        classes=list(m.classes or []),
        scope=dict(p.scope),
        state=MeasureState.ACTIVE.value,
        proposed_at=now,
        starts_at=now,
        review_at=m.review_at,
        expires_at=m.expires_at,
        rule=m.rule,
        ladder=ladder.label,
        figures=_figures_json(p),
        reason=p.reason,
        decision_ref=m.decision_ref,
        needs_approval=m.needs_approval,
        created_by=actor,
        supersedes_id=m.id,
    )
    session.add(new)
    session.flush()
    payload = {
        **base,
        "measure_id": new.id,
        "supersedes_id": m.id,
        "scope": new.scope,
        "previous_scope": m.scope,
    }
    _event(session, now, actor, "changed", payload)
    return new.id


def expire_due(db: Database, now: datetime, actor: str) -> list[int]:
    """Measures whose review date has passed without renewal become expired."""
    with db.session() as session:
        return _expire(session, now, actor)


def _expire(session: Session, now: datetime, actor: str) -> list[int]:
    rows = session.scalars(
        select(Measure).where(
            Measure.state.in_([MeasureState.PROPOSED.value, MeasureState.ACTIVE.value]),
            Measure.expires_at.is_not(None),
            Measure.expires_at <= now,
        )
    ).all()
    for m in rows:
        m.state = MeasureState.EXPIRED.value
        audit.record(
            session,
            at=now,
            actor=actor,
            type="measure.expired",
            payload={"measure_id": m.id, "expires_at": m.expires_at, "rule": m.rule},
        )
    return [m.id for m in rows]


# --- approvals, decisions, obligations ------------------------------------------------------


def four_eyes(actor: Actor, m: Measure, approved_by: Sequence[str]) -> None:
    """Raise (with the reason) unless ``actor`` may approve or reject measure ``m`` now.

    The one four-eyes check behind the console, the API and the CLI: an account with the
    approver role that neither proposed the measure nor already approved it, and a
    measure still awaiting approval.
    """
    authorise(actor, "approve")
    if actor.name in approved_by:
        raise Conflict(f"{actor.name} already approved measure {m.id}", where="account")
    if m.state != MeasureState.PROPOSED.value:
        raise Conflict(f"measure {m.id} is {m.state}; there is nothing to approve", where="ID")
    if actor.name == m.created_by:
        raise Forbidden(
            f"{actor.name} proposed measure {m.id}; four eyes: another approver must decide it",
            where="account",
        )


def _awaiting(session: Session, measure_id: int, actor: Actor, now: datetime) -> Measure:
    """Measure ``measure_id``, checked by ``four_eyes`` for ``actor`` at ``now``."""
    m = session.get(Measure, measure_id)
    if m is None:
        raise NotFound(f"no measure {measure_id}", where="ID")
    if m.state == MeasureState.PROPOSED.value and m.expires_at is not None and m.expires_at <= now:
        _expire(session, now, actor.label)
        raise Conflict(f"measure {measure_id} expired at {m.expires_at.isoformat()}", where="ID")
    approved_by = session.scalars(select(Approval.by).where(Approval.measure_id == m.id)).all()
    four_eyes(actor, m, approved_by)
    return m


def approve(db: Database, measure_id: int, actor: Actor, now: datetime) -> MeasureRecord:
    """A second account approves a proposed measure; it becomes active now."""
    with db.session() as session:
        m = _awaiting(session, measure_id, actor, now)
        by = actor.label
        session.add(Approval(measure_id=m.id, by=by, at=now))
        m.state, m.starts_at = MeasureState.ACTIVE.value, now
        _event(
            session, now, by, "approved", {"measure_id": m.id, "by": by, "created_by": m.created_by}
        )
        if m.supersedes_id is not None:
            old = session.get(Measure, m.supersedes_id)
            if old is not None and old.state == MeasureState.ACTIVE.value:
                old.state, old.lifted_at = MeasureState.LIFTED.value, now
                reason = f"superseded by {m.id}"
                _event(session, now, by, "lifted", {"measure_id": old.id, "reason": reason})
        slug = session.scalar(select(Platform.slug).where(Platform.id == m.platform_id))
        return measure_record(m, slug)


def reject(
    db: Database, measure_id: int, actor: Actor, reason: str, now: datetime
) -> MeasureRecord:
    """A second account rejects a proposed measure: it ends unapplied (shown as lifted, its
    lift decision ``rejected: REASON``), so the ladder may propose again if it still holds."""
    reason = reason.strip()
    if not reason:
        raise InputError("a rejection needs a reason", where="reason")
    with db.session() as session:
        m = _awaiting(session, measure_id, actor, now)
        m.state, m.lifted_at = MeasureState.LIFTED.value, now
        m.lift_decision = f"rejected: {reason}"[:200]
        _event(
            session,
            now,
            actor.label,
            "rejected",
            {"measure_id": m.id, "by": actor.label, "reason": reason, "created_by": m.created_by},
        )
        slug = session.scalar(select(Platform.slug).where(Platform.id == m.platform_id))
        return measure_record(m, slug)


def add(
    db: Database,
    slug: str,
    *,
    action: str,
    decision: str,
    reason: str,
    now: datetime,
    actor: str,
    rate_kbps: int | None = None,
    classes: Sequence[str] = (),
    scope: Mapping[str, float] | None = None,
    expires: datetime | None = None,
) -> int:
    """Impose a measure by a regulator's decision (outside any ladder).

    A block always waits for a second person's approval; a throttle is active at once.
    """
    if action not in (MeasureAction.THROTTLE.value, MeasureAction.BLOCK.value):
        raise InputError("action must be throttle or block", where="--action")
    if not decision.strip():
        raise InputError("a measure needs a decision reference", where="--decision")
    if not reason.strip():
        raise InputError("a measure needs a reason", where="--reason")
    if action == MeasureAction.THROTTLE.value:
        if rate_kbps is None or rate_kbps < 1:
            raise InputError("a throttle needs a positive rate", where="--rate-kbps")
    elif rate_kbps is not None:
        raise InputError("a block has no rate", where="--rate-kbps")
    scope = dict(scope or {"mobile": 100.0, "fixed": 100.0})
    for cls, pct in scope.items():
        if cls not in SUBSCRIBER_CLASSES:
            raise InputError(f"unknown subscriber class {cls!r}", where=f"--{cls}")
        if not 0 <= pct <= 100:
            raise InputError(f"impossible scope {pct:g}%: must be 0..100", where=f"--{cls}")
    scope = {k: float(v) for k, v in scope.items() if v > 0}
    if not scope:
        raise InputError("the scope covers no subscribers", where="--mobile/--fixed")
    if expires is not None and expires <= now:
        raise InputError("expiry is in the past", where="--expires")
    needs_approval = action == MeasureAction.BLOCK.value
    with db.session() as session:
        pid = platform_id(session, slug)
        source = FigureSource(session, [slug], now)
        fig = source.figures(slug, now)
        m = Measure(
            platform_id=pid,
            action=action,
            rate_kbps=rate_kbps,
            classes=sorted(set(c for c in classes if c != "*")),
            scope=scope,
            review_at=expires,
            expires_at=expires,
            figures={"fired": f"decision {decision}", "read": {}, "snapshot": snapshot(fig)},
            reason=reason,
            decision_ref=decision,
            needs_approval=needs_approval,
        )
        payload = {"platform": slug, "decision": decision, "reason": reason, "expires_at": expires}
        _open(session, m, now, actor, payload)
        return m.id


def lift(db: Database, measure_id: int, decision: str, now: datetime, actor: str) -> None:
    """Lift a measure by decision (ladder-made or not)."""
    with db.session() as session:
        lift_in(session, measure_id, decision, now, actor)


def lift_in(session: Session, measure_id: int, decision: str, now: datetime, actor: str) -> None:
    """``lift`` in the caller's transaction (an appeal's reversal lifts with its decision)."""
    if not decision.strip():
        raise InputError("lifting needs a decision reference", where="--decision")
    m = session.get(Measure, measure_id)
    if m is None:
        raise NotFound(f"no measure {measure_id}", where="ID")
    if m.state in ENDED:
        raise Conflict(f"measure {measure_id} is already {m.state}")
    m.state, m.lifted_at, m.lift_decision = MeasureState.LIFTED.value, now, decision
    audit.record(
        session,
        at=now,
        actor=actor,
        type="measure.lifted",
        payload={"measure_id": m.id, "decision": decision},
    )


def set_obligation(
    db: Database, slug: str, kind: str, state: str, decision: str, now: datetime, actor: str
) -> int:
    """Record a platform's obligation state (e.g. data localisation violating) by decision."""
    if kind not in OBLIGATION_KINDS:
        raise InputError(
            f"unknown obligation {kind!r} (known: {', '.join(sorted(OBLIGATION_KINDS))})",
            where="KIND",
        )
    if state not in OBLIGATION_STATES:
        raise InputError(f"state must be one of {', '.join(OBLIGATION_STATES)}", where="--state")
    if not decision.strip():
        raise InputError("an obligation state needs a decision reference", where="--decision")
    with db.session() as session:
        pid = platform_id(session, slug)
        row = Obligation(platform_id=pid, kind=kind, state=state, decision=decision, at=now)
        session.add(row)
        session.flush()
        audit.record(
            session,
            at=now,
            actor=actor,
            type="obligation.set",
            payload={"platform": slug, "kind": kind, "state": state, "decision": decision},
        )
        return row.id


# --- what-if --------------------------------------------------------------------------------


def simulate(
    db: Database,
    ladder: Ladder,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = DAY,
    platform: str | None = None,
    approve: bool = False,
) -> dict[str, list[StepResult]]:
    """Replay ``ladder`` over the recorded facts from ``start`` to ``end``, writing nothing.

    Measures start from none (what the ladder alone would have done); obligations are
    taken as recorded at each step. ``approve`` takes approvals as given at once.
    """
    if end < start:
        raise InputError("--to is before --from", where="--to")
    if step <= timedelta(0):
        raise InputError("step must be positive", where="--step")
    if (end - start) / step > 100_000:
        raise InputError("too many steps (more than 100,000)", where="--step")
    with db.reading() as session:
        plats = platforms(session, platform)
        source = FigureSource(session, list(plats.values()), end)
        obl_rows = obligation_history(session, list(plats))
    out: dict[str, list[StepResult]] = {}
    for pid, slug in plats.items():
        steps = []
        now = start
        while now <= end:
            obl = {k: s for p, k, s, at in obl_rows if p == pid and at <= now}
            inp = source.inputs(ladder, slug, now, obl)
            steps.append(Step(now, inp.figures, inp.recent, inp.obligations, inp.history))
            now += step
        out[slug] = replay(ladder, steps, approve=approve)
    return out
