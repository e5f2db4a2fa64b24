"""What the demo's report reads from the database a run leaves behind.

Measures (as records), their history from the audit log, the measured rates and the
timeline file: everything shown comes from the database, nothing from the driver's memory.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.model import MeasureState, describe_scope
from takedown.policy.records import measure_record
from takedown.sim.report import HistoryRow, MeasureRow, RateRow
from takedown.store.db import Database
from takedown.store.schema import Approval, Event, Measure, Measurement, Platform


def write_timeline(s: Session, path: Path) -> None:
    """Every audit event, one JSON object a line."""
    with path.open("w", encoding="utf-8") as fh:
        for ev in s.scalars(select(Event).order_by(Event.seq)):
            doc = {
                "seq": ev.seq,
                "at": ev.at.isoformat(),
                "actor": ev.actor,
                "type": ev.type,
                "payload": ev.payload,
                "hash": ev.hash,
            }
            fh.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")


def measure_rows(s: Session, platform: str) -> list[MeasureRow]:
    """Every measure of ``platform``, with who approved it and when it ended."""
    rows = []
    query = (
        select(Measure)
        .join(Platform, Platform.id == Measure.platform_id)
        .where(Platform.slug == platform)
        .order_by(Measure.id)
    )
    for m in s.scalars(query):
        r = measure_record(m, platform)
        approvals = [
            f"{a.by} ({a.at:%d %b})"
            for a in s.scalars(select(Approval).where(Approval.measure_id == m.id))
        ]
        end = r.lifted_at or (r.expires_at if r.state == MeasureState.EXPIRED else None)
        rows.append(
            MeasureRow(
                id=r.id,
                action=r.action.value,
                rate_kbps=r.rate_kbps,
                classes=list(r.classes),
                scope=dict(r.scope),
                state=r.state.value,
                start=r.starts_at,
                end=end,
                rule=r.rule,
                figures=dict(r.figures.get("read", {})),  # type: ignore[call-overload]
                approvals=approvals,
                reason=r.reason,
            )
        )
    return rows


def history_rows(s: Session) -> list[HistoryRow]:
    """Every change to a measure, from the audit log."""
    rows = []
    query = select(Event).where(Event.type.like("measure.%")).order_by(Event.seq)
    for ev in s.scalars(query):
        p = ev.payload
        detail = []
        if p.get("scope"):
            detail.append(describe_scope(p["scope"]))
        if p.get("review_at"):
            detail.append(f"review {str(p['review_at'])[:10]}")
        if p.get("supersedes_id"):
            detail.append(f"replaces #{p['supersedes_id']}")
        if p.get("by"):
            detail.append(f"by {p['by']}")
        rows.append(
            HistoryRow(
                ev.at,
                p.get("measure_id") or p.get("measure"),
                ev.type.split(".", 1)[1],
                p.get("rule"),
                "; ".join(detail) or ev.actor,
            )
        )
    return rows


def rate_rows(s: Session) -> list[RateRow]:
    """The measured transfers, fixed subscribers grouped by whether a throttle chose them."""
    rows = s.scalars(select(Measurement).order_by(Measurement.id)).all()
    # A fixed subscriber is "in share" if a published throttle ever selected it.
    in_share = {m.source for m in rows if m.subscriber_class == "fixed" and m.target_kbps}
    out = []
    for m in rows:
        group = m.subscriber_class or ""
        if group == "fixed":
            group = "fixed · in share" if m.source in in_share else "fixed · outside share"
        out.append(
            RateRow(
                m.phase or "",
                group,
                m.source or "",
                m.content_class or "",
                m.host,
                m.kbps,
                m.target_kbps,
                m.verdict or "",
            )
        )
    return out


def point_statuses(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Every enforcement point as it last reported (``fleet.status``), as JSON objects."""
    from takedown.fleet import store as fleet

    return [p.as_json() for o in fleet.status(db, now) for p in o.points]
