"""Stored measures read back as typed records: listing (as of a moment) and explanation.

The CLI, the regulator's API and the public pages render these records; nothing here
writes.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from takedown.errors import NotFound
from takedown.model import (
    ApprovalRecord,
    AuditRecord,
    DecisionBasis,
    LegalBasis,
    MeasureAction,
    MeasureExplanation,
    MeasureRecord,
    MeasureState,
    ObligationRecord,
)
from takedown.policy.inputs import platform_id
from takedown.store.db import Database
from takedown.store.schema import Approval, Event, Item, Measure, Obligation, Platform


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


def list_measures(
    db: Database, *, at: datetime | None = None, platform: str | None = None
) -> list[MeasureRecord]:
    """Measures (as of ``at``: those proposed by then, each with its state then)."""
    with db.reading() as session:
        q = select(Measure, Platform.slug).join(Platform, Platform.id == Measure.platform_id)
        if platform is not None:
            platform_id(session, platform, where="--platform")
            q = q.where(Platform.slug == platform)
        if at is not None:
            q = q.where(Measure.proposed_at <= at)
        rows = session.execute(q.order_by(Measure.id)).all()
    records = [measure_record(m, slug) for m, slug in rows]
    if at is None:
        return records
    return [dataclasses.replace(r, state=r.state_at(at) or r.state) for r in records]


def explain(db: Database, measure_id: int, *, max_decisions: int = 100) -> MeasureExplanation:
    """The chain from a measure to the facts and legal decisions behind it."""
    with db.reading() as session:
        m = session.get(Measure, measure_id)
        if m is None:
            raise NotFound(f"no measure {measure_id}", where="ID")
        slug = session.scalar(select(Platform.slug).where(Platform.id == m.platform_id))
        record = measure_record(m, slug)
        supersedes = _replaced(session, m, slug)
        return MeasureExplanation(
            measure=record,
            legal_basis=_legal_basis(session, m, max_decisions),
            obligations=tuple(
                ObligationRecord(o.kind, o.state, o.decision, o.at)
                for o in session.scalars(
                    select(Obligation)
                    .where(Obligation.platform_id == m.platform_id, Obligation.at <= m.proposed_at)
                    .order_by(Obligation.at, Obligation.id)
                )
            ),
            approvals=tuple(
                ApprovalRecord(a.by, a.at)
                for a in session.scalars(
                    select(Approval).where(Approval.measure_id == m.id).order_by(Approval.at)
                )
            ),
            supersedes=supersedes,
            superseded_by=session.scalar(select(Measure.id).where(Measure.supersedes_id == m.id)),
            events=_events(session, {m.id, *(r.id for r in supersedes)}),
        )


def _legal_basis(session: Session, m: Measure, max_decisions: int) -> LegalBasis:
    """The items live on the platform when ``m`` was proposed, by decision and category."""
    when = m.proposed_at
    rows = session.execute(
        select(Item.decision_ref, Item.authority, Item.decision_date, Item.category, func.count())
        .where(
            Item.platform_id == m.platform_id,
            Item.listed_at <= when,
            (Item.delisted_at.is_(None)) | (Item.delisted_at > when),
        )
        .group_by(Item.decision_ref, Item.authority, Item.decision_date, Item.category)
    ).all()
    heads: dict[str, tuple[str | None, str | None]] = {}
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    by_category: dict[str, int] = defaultdict(int)
    for ref, authority, date, category, count in rows:
        heads.setdefault(ref, (authority, date))
        counts[ref][category] = counts[ref].get(category, 0) + count
        by_category[category] += count
    decisions = [
        DecisionBasis(ref, *heads[ref], items=sum(cats.values()), by_category=cats)
        for ref, cats in counts.items()
    ]
    decisions.sort(key=lambda d: (-d.items, d.decision))
    return LegalBasis(
        items=sum(by_category.values()),
        by_category=dict(sorted(by_category.items())),
        decisions_total=len(decisions),
        decisions=tuple(decisions[:max_decisions]),
    )


def _replaced(session: Session, m: Measure, slug: str) -> tuple[MeasureRecord, ...]:
    """The measures ``m`` replaced, nearest first."""
    chain = []
    cur: Measure | None = m
    while cur is not None and cur.supersedes_id is not None:
        cur = session.get(Measure, cur.supersedes_id)
        if cur is not None:
            chain.append(measure_record(cur, slug))
    return tuple(chain)


def _events(session: Session, measure_ids: set[int]) -> tuple[AuditRecord, ...]:
    """The audit events of these measures, in log order."""
    events = session.scalars(
        select(Event).where(Event.type.like("measure.%")).order_by(Event.seq)
    ).all()
    return tuple(
        AuditRecord(e.seq, e.at, e.actor, e.type, e.payload)
        for e in events
        if isinstance(e.payload, dict) and e.payload.get("measure_id") in measure_ids
    )
