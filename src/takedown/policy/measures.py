"""The measures shell: evaluate a ladder over the database, apply, approve, lift, explain.

Evaluation itself is pure (``policy.evaluate``); this module reads its inputs (ledger
figures, earlier figures, new-item windows, obligations, measures) and writes what it
decides, each change with an audit event in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from takedown.errors import Conflict, InputError, NotFound
from takedown.model import Figures, MeasureAction, MeasureRecord, MeasureState
from takedown.policy.evaluate import (
    DAY,
    MeasureView,
    Proposal,
    ProposalKind,
    Step,
    StepResult,
    evaluate,
    replay,
)
from takedown.policy.expr import OBLIGATION_KINDS
from takedown.policy.spec import SUBSCRIBER_CLASSES, Ladder
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Approval, Event, Item, Measure, Obligation, Platform

OBLIGATION_STATES = ("compliant", "violating")
ENDED = (MeasureState.LIFTED.value, MeasureState.EXPIRED.value)


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """Everything evaluation reads for one platform at one moment."""

    figures: Figures
    history: tuple[Figures, ...]
    recent: Mapping[int, Figures]
    obligations: Mapping[str, str]


def _platforms(session: Session, platform: str | None) -> dict[int, str]:
    q = select(Platform.id, Platform.slug).order_by(Platform.slug)
    if platform is not None:
        q = q.where(Platform.slug == platform)
    out = {pid: slug for pid, slug in session.execute(q)}
    if platform is not None and not out:
        raise NotFound(f"unknown platform {platform!r}", where="--platform")
    return out


def platform_id(session: Session, slug: str, where: str = "SLUG") -> int:
    pid = session.scalar(select(Platform.id).where(Platform.slug == slug))
    if pid is None:
        raise NotFound(f"unknown platform {slug!r}", where=where)
    return pid


def obligations_of(session: Session, pids: Sequence[int]) -> dict[int, dict[str, str]]:
    """platform id -> kind -> latest state."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    rows = session.execute(
        select(Obligation.platform_id, Obligation.kind, Obligation.state)
        .where(Obligation.platform_id.in_(list(pids)))
        .order_by(Obligation.at, Obligation.id)
    )
    for pid, kind, state in rows:
        out[pid][kind] = state
    return out


class FigureSource:
    """Ledger figures of many platforms at arbitrary moments from one load of the facts.

    Uses ``takedown.ledger`` (facts replayed as of each moment). New-item windows are the
    same figures over the items listed in the last N days.
    """

    def __init__(self, session: Session, slugs: Sequence[str], until: datetime) -> None:
        from takedown import ledger

        self._ledger = ledger
        facts = ledger.load_facts(session, None, until=until)
        wanted = set(slugs)
        by_item: dict[int, str] = {}
        items: dict[str, list[Any]] = defaultdict(list)
        for item in facts.items:
            if item.platform in wanted:
                items[item.platform].append(item)
                by_item[item.id] = item.platform
        responses: dict[str, list[Any]] = defaultdict(list)
        checks: dict[str, list[Any]] = defaultdict(list)
        for r in facts.responses:
            if r.item_id in by_item:
                responses[by_item[r.item_id]].append(r)
        for c in facts.checks:
            if c.item_id in by_item:
                checks[by_item[c.item_id]].append(c)
        self._facts = {s: ledger.LedgerFacts(items[s], responses[s], checks[s]) for s in wanted}
        self._index = {s: ledger.LedgerIndex(f) for s, f in self._facts.items()}

    def figures(self, slug: str, now: datetime) -> Figures:
        return self._index[slug].figures(slug, now)

    def recent(self, slug: str, now: datetime, days: int) -> Figures:
        facts = self._facts[slug]
        since = now - days * DAY
        sub = self._ledger.LedgerFacts(
            [i for i in facts.items if i.listed_at > since], facts.responses, facts.checks
        )
        return self._ledger.LedgerIndex(sub).figures(slug, now)

    def inputs(
        self, ladder: Ladder, slug: str, now: datetime, obligations: Mapping[str, str]
    ) -> Inputs:
        return Inputs(
            figures=self.figures(slug, now),
            history=tuple(self.figures(slug, now - n * DAY) for n in sorted(ladder.history_days())),
            recent={n: self.recent(slug, now, n) for n in sorted(ladder.windows())},
            obligations=dict(obligations),
        )


# --- measures as evaluation sees them -------------------------------------------------------


def _ended_at(m: Measure) -> datetime | None:
    if m.state == MeasureState.LIFTED.value:
        return m.lifted_at
    if m.state == MeasureState.EXPIRED.value:
        return m.expires_at or m.review_at
    return None


def views_of(session: Session, pids: Sequence[int]) -> dict[int, list[MeasureView]]:
    """Ladder-made measures per platform as MeasureViews (with their chain's first start)."""
    rows = session.scalars(
        select(Measure).where(Measure.platform_id.in_(list(pids)), Measure.rule.is_not(None))
    ).all()
    by_id = {m.id: m for m in rows}
    slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
    out: dict[int, list[MeasureView]] = defaultdict(list)
    for m in rows:
        origin = m.starts_at
        cur = m
        while cur.supersedes_id is not None and cur.supersedes_id in by_id:
            cur = by_id[cur.supersedes_id]
            origin = cur.starts_at or origin
        out[m.platform_id].append(
            MeasureView(
                id=m.id,
                platform=slugs[m.platform_id],
                rule=m.rule,
                action=MeasureAction(m.action),
                state=MeasureState(m.state),
                since=m.proposed_at,
                scope={k: float(v) for k, v in (m.scope or {}).items()},
                rate_kbps=m.rate_kbps,
                classes=tuple(m.classes or ()),
                origin_at=origin if m.state == MeasureState.ACTIVE.value else None,
                review_at=m.review_at,
                ended_at=_ended_at(m),
                needs_approval=m.needs_approval,
            )
        )
    return out


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
    plats = _platforms(session, platform)
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
            m = Measure(
                platform_id=pids[p.platform],
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
            ids.append(m.id)
            continue
        m = session.get(Measure, p.measure_id)
        if m is None:  # pragma: no cover - proposals come from the same transaction
            raise NotFound(f"measure {p.measure_id} vanished")
        if p.kind == ProposalKind.RENEW:
            m.review_at = m.expires_at = p.review_at
            ids.append(m.id)
            audit.record(
                session,
                at=now,
                actor=actor,
                type="measure.renewed",
                payload={**base, "measure_id": m.id, "review_at": p.review_at},
            )
        elif p.kind == ProposalKind.LIFT:
            m.state, m.lifted_at = MeasureState.LIFTED.value, now
            ids.append(m.id)
            audit.record(
                session,
                at=now,
                actor=actor,
                type="measure.lifted",
                payload={**base, "measure_id": m.id},
            )
        else:
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
            ids.append(new.id)
            audit.record(
                session,
                at=now,
                actor=actor,
                type="measure.changed",
                payload={
                    **base,
                    "measure_id": new.id,
                    "supersedes_id": m.id,
                    "scope": new.scope,
                    "previous_scope": m.scope,
                },
            )
    return ids


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


def approve(db: Database, measure_id: int, by: str, now: datetime) -> dict[str, Any]:
    """A second person approves a proposed measure; it becomes active now."""
    by = by.strip()
    if not by:
        raise InputError("an approver's name is required", where="--by")
    with db.session() as session:
        m = session.get(Measure, measure_id)
        if m is None:
            raise NotFound(f"no measure {measure_id}", where="ID")
        if m.expires_at is not None and m.expires_at <= now:
            _expire(session, now, by)
            raise Conflict(f"measure {measure_id} expired at {m.expires_at.isoformat()}")
        if m.state != MeasureState.PROPOSED.value:
            raise Conflict(f"measure {measure_id} is {m.state}, not awaiting approval")
        if by == m.created_by:
            raise Conflict(
                f"{by!r} applied measure {measure_id}; a second person must approve it",
                where="--by",
            )
        session.add(Approval(measure_id=m.id, by=by, at=now))
        m.state, m.starts_at = MeasureState.ACTIVE.value, now
        audit.record(
            session,
            at=now,
            actor=by,
            type="measure.approved",
            payload={"measure_id": m.id, "by": by, "created_by": m.created_by},
        )
        if m.supersedes_id is not None:
            old = session.get(Measure, m.supersedes_id)
            if old is not None and old.state == MeasureState.ACTIVE.value:
                old.state, old.lifted_at = MeasureState.LIFTED.value, now
                audit.record(
                    session,
                    at=now,
                    actor=by,
                    type="measure.lifted",
                    payload={"measure_id": old.id, "reason": f"superseded by {m.id}"},
                )
        return measure_json(m)


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
        from takedown.policy.evaluate import snapshot

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
    if not decision.strip():
        raise InputError("lifting needs a decision reference", where="--decision")
    with db.session() as session:
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


# --- reading --------------------------------------------------------------------------------


def measure_record(m: Measure, slug: str) -> MeasureRecord:
    """A stored measure row as the typed record later stages take."""
    return MeasureRecord(
        id=m.id,
        platform=slug,
        action=MeasureAction(m.action),
        state=MeasureState(m.state),
        proposed_at=m.proposed_at,
        reason=m.reason,
        created_by=m.created_by,
        rate_kbps=m.rate_kbps,
        classes=tuple(m.classes or ()),
        scope={k: float(v) for k, v in (m.scope or {}).items()},
        starts_at=m.starts_at,
        review_at=m.review_at,
        expires_at=m.expires_at,
        lifted_at=m.lifted_at,
        rule=m.rule,
        ladder=m.ladder,
        figures=dict(m.figures or {}),
        decision_ref=m.decision_ref,
        lift_decision=m.lift_decision,
        needs_approval=m.needs_approval,
        supersedes_id=m.supersedes_id,
    )


def state_at(m: Measure, at: datetime) -> str | None:
    """The measure's state as of ``at`` (None if not yet proposed)."""
    state = measure_record(m, "").state_at(at)
    return None if state is None else state.value


def measure_json(m: Measure, slug: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    return {
        "id": m.id,
        "platform": slug,
        "action": m.action,
        "rate_kbps": m.rate_kbps,
        "classes": list(m.classes or []),
        "scope": dict(m.scope or {}),
        "state": state_at(m, at) if at is not None else m.state,
        "proposed_at": m.proposed_at,
        "starts_at": m.starts_at,
        "review_at": m.review_at,
        "expires_at": m.expires_at,
        "lifted_at": m.lifted_at,
        "rule": m.rule,
        "ladder": m.ladder,
        "reason": m.reason,
        "decision_ref": m.decision_ref,
        "lift_decision": m.lift_decision,
        "needs_approval": m.needs_approval,
        "created_by": m.created_by,
        "supersedes_id": m.supersedes_id,
    }


def list_measures(
    db: Database, *, at: datetime | None = None, platform: str | None = None
) -> list[dict[str, Any]]:
    """Measures (as of ``at``: those proposed by then, with their state then)."""
    with db.reading() as session:
        q = select(Measure, Platform.slug).join(Platform, Platform.id == Measure.platform_id)
        if platform is not None:
            platform_id(session, platform, where="--platform")
            q = q.where(Platform.slug == platform)
        if at is not None:
            q = q.where(Measure.proposed_at <= at)
        rows = session.execute(q.order_by(Measure.id)).all()
        return [measure_json(m, slug, at) for m, slug in rows]


def explain(db: Database, measure_id: int, *, max_decisions: int = 100) -> dict[str, Any]:
    """The chain from a measure to the facts and legal decisions behind it."""
    with db.reading() as session:
        m = session.get(Measure, measure_id)
        if m is None:
            raise NotFound(f"no measure {measure_id}", where="ID")
        slug = session.scalar(select(Platform.slug).where(Platform.id == m.platform_id))
        out = measure_json(m, slug)
        out["figures"] = m.figures
        when = m.proposed_at
        live = (
            Item.platform_id == m.platform_id,
            Item.listed_at <= when,
            (Item.delisted_at.is_(None)) | (Item.delisted_at > when),
        )
        rows = session.execute(
            select(
                Item.decision_ref, Item.authority, Item.decision_date, Item.category, func.count()
            )
            .where(*live)
            .group_by(Item.decision_ref, Item.authority, Item.decision_date, Item.category)
        ).all()
        decisions: dict[str, dict[str, Any]] = {}
        by_category: dict[str, int] = defaultdict(int)
        for ref, authority, date, category, count in rows:
            d = decisions.setdefault(
                ref,
                {
                    "decision": ref,
                    "authority": authority,
                    "date": date,
                    "items": 0,
                    "by_category": {},
                },
            )
            d["items"] += count
            d["by_category"][category] = d["by_category"].get(category, 0) + count
            by_category[category] += count
        ranked = sorted(decisions.values(), key=lambda d: (-d["items"], d["decision"]))
        out["legal_basis"] = {
            "items": sum(by_category.values()),
            "by_category": dict(sorted(by_category.items())),
            "decisions_total": len(ranked),
            "decisions": ranked[:max_decisions],
        }
        out["obligations"] = [
            {"kind": o.kind, "state": o.state, "decision": o.decision, "at": o.at}
            for o in session.scalars(
                select(Obligation)
                .where(Obligation.platform_id == m.platform_id, Obligation.at <= when)
                .order_by(Obligation.at, Obligation.id)
            )
        ]
        out["approvals"] = [
            {"by": a.by, "at": a.at}
            for a in session.scalars(
                select(Approval).where(Approval.measure_id == m.id).order_by(Approval.at)
            )
        ]
        chain = []
        cur = m
        while cur.supersedes_id is not None:
            cur = session.get(Measure, cur.supersedes_id)
            if cur is None:
                break
            chain.append(
                {
                    "id": cur.id,
                    "scope": cur.scope,
                    "proposed_at": cur.proposed_at,
                    "lifted_at": cur.lifted_at,
                    "reason": cur.reason,
                }
            )
        out["supersedes"] = chain
        out["superseded_by"] = session.scalar(
            select(Measure.id).where(Measure.supersedes_id == m.id)
        )
        ids = {m.id, *(c["id"] for c in chain)}
        events = session.scalars(
            select(Event).where(Event.type.like("measure.%")).order_by(Event.seq)
        ).all()
        out["events"] = [
            {"seq": e.seq, "at": e.at, "actor": e.actor, "type": e.type, "payload": e.payload}
            for e in events
            if isinstance(e.payload, dict) and e.payload.get("measure_id") in ids
        ]
        return out


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
        plats = _platforms(session, platform)
        source = FigureSource(session, list(plats.values()), end)
        obl_rows = session.execute(
            select(Obligation.platform_id, Obligation.kind, Obligation.state, Obligation.at)
            .where(Obligation.platform_id.in_(list(plats)))
            .order_by(Obligation.at, Obligation.id)
        ).all()
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
