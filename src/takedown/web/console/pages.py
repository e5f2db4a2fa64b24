"""What each console page shows, as plain JSON-able data (the HTML and ``?format=json``
render the same document). Reads only; every figure comes from the module that owns it
(``ledger.status``, ``policy.records.explain``, ``feed.publisher.measure_check``, …).

Lists page by id (``after``: the last id of the previous page), ``PAGE`` rows at a time,
so a page costs the same at the millionth row as at the first.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from takedown import ledger
from takedown.accounts import Actor
from takedown.errors import InputError, NotFound, TakedownError
from takedown.model import ItemState, MeasureState, describe_action, describe_scope
from takedown.store.db import Database
from takedown.store.schema import (
    Approval,
    Check,
    Item,
    Measure,
    Notice,
    NoticeItem,
    Platform,
    Response,
    VantagePoint,
    target_key,
)

PAGE = 50
ITEM_STATES = (*(s.value for s in ItemState), "overdue")
CHART_DAYS = 120  # the dashboard chart's window, days back from now
HISTORY_ROWS = 200  # checks shown on an item page, newest first


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def platform_slugs(db: Database) -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(Platform.slug).order_by(Platform.slug)))


# --- dashboard ------------------------------------------------------------------------------


def dashboard(db: Database, now: datetime) -> dict[str, Any]:
    """Per platform the ledger's figures; the measures in force and those awaiting approval;
    the appeals open and overdue."""
    from takedown import appeals
    from takedown.policy.records import list_measures

    status = ledger.status(db, now)
    records = list_measures(db, at=now)
    return {
        "as_of": now.isoformat(),
        "platforms": [ledger.figures_json(f) for f in status.figures],
        "in_force": [_measure_row(m) for m in records if m.state == MeasureState.ACTIVE],
        "awaiting_approval": sum(1 for m in records if m.state == MeasureState.PROPOSED),
        "appeals": appeals.counts(db, now),
    }


def _measure_row(m: Any) -> dict[str, Any]:
    row = m.as_json()
    row["describe"] = describe_action(m.action, m.rate_kbps)
    row["scope_text"] = describe_scope(dict(m.scope))
    return row


class ChartCache:
    """The dashboard chart per platform as SVG, drawn with the demo report's own chart
    (``sim.report.chart_compliance``) and kept until the audit log moves or the hour turns:
    replaying a platform's facts costs, the dashboard is looked at often."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._svgs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()  # pyplot is not thread-safe; one drawing at a time

    def svg(self, db: Database, slug: str, now: datetime) -> bytes:
        from takedown.store import audit

        with db.reading() as session:
            if session.scalar(select(Platform.id).where(Platform.slug == slug)) is None:
                raise NotFound(f"no platform {slug!r}", where="platform")
            head = audit.current_head(session).seq
        key = (slug, now.replace(minute=0, second=0, microsecond=0), head)
        with self._lock:
            if key in self._svgs:
                self._svgs.move_to_end(key)
                return self._svgs[key]
            data = _chart(db, slug, now)
            self._svgs[key] = data
            while len(self._svgs) > self.size:
                self._svgs.popitem(last=False)
            return data


def _chart(db: Database, slug: str, now: datetime) -> bytes:
    from takedown.ledger import daily_series, load_facts
    from takedown.sim import readout
    from takedown.sim.report import DayFigures, ReportData, chart_compliance

    with db.reading() as session:
        facts = load_facts(session, slug, now)
        rows = readout.measure_rows(session, slug)
    listed = [i.listed_at for i in facts.items]
    # from the first listing (at most CHART_DAYS back, at least a week: a line, not a dot)
    start = max(min(listed, default=now), now - timedelta(days=CHART_DAYS))
    start = min(start, now - timedelta(days=7))
    days = [
        DayFigures(
            f.as_of.date(),
            f.flagged,
            f.removed + f.restricted,
            f.remaining,
            f.overdue,
            f.removed_share,
        )
        for f in daily_series(facts, slug, start, now)
    ]
    data = ReportData(f"{slug}: compliance", slug, days, rows, [], "", None)
    out = io.BytesIO()
    chart_compliance(data, out, fmt="svg")
    return out.getvalue()


# --- register -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemQuery:
    """A register search: each given field narrows it. ``target``: an exact target or host
    (indexed lookups: the register is millions of rows)."""

    target: str | None = None
    decision: str | None = None
    category: str | None = None
    platform: str | None = None
    state: str | None = None
    after: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def _host_of(text: str) -> str | None:
    from takedown.names import normalise_host

    try:
        return normalise_host(text)
    except TakedownError:
        return None


def search_items(db: Database, q: ItemQuery, now: datetime) -> dict[str, Any]:
    """One page of register items matching ``q``, by id."""
    if q.state and q.state not in ITEM_STATES:
        raise InputError(
            f"unknown state {q.state!r}; known: {', '.join(ITEM_STATES)}", where="state"
        )
    query = (
        select(Item, Platform.slug)
        .outerjoin(Platform, Platform.id == Item.platform_id)
        .order_by(Item.id)
        .limit(PAGE + 1)
    )
    if q.target:
        text = q.target.strip()
        host = _host_of(text)
        wanted = [Item.target_key == target_key(text)]
        if host is not None:
            wanted.append(Item.host == host)
        query = query.where(or_(*wanted))
    if q.decision:
        query = query.where(Item.decision_ref == q.decision.strip())
    if q.category:
        query = query.where(Item.category == q.category.strip())
    if q.platform:
        query = query.where(Platform.slug == q.platform.strip())
    if q.state == "overdue":
        query = query.where(
            Item.state == ItemState.OPEN.value,
            Item.deadline_at.is_not(None),
            Item.deadline_at <= now,
        )
    elif q.state:
        query = query.where(Item.state == q.state)
    if q.after:
        query = query.where(Item.id > q.after)
    with db.reading() as session:
        rows = session.execute(query).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return {
        "query": q.as_json(),
        "items": [_item_row(item, slug, now) for item, slug in rows],
        "next_after": rows[-1][0].id if more else None,
    }


def _item_row(item: Item, slug: str | None, now: datetime) -> dict[str, Any]:
    overdue = (
        item.state == ItemState.OPEN.value
        and item.deadline_at is not None
        and item.deadline_at <= now
    )
    return {
        "id": item.id,
        "target": item.target,
        "kind": item.kind,
        "platform": slug,
        "category": item.category,
        "decision": item.decision_ref,
        "state": item.state,
        "overdue": overdue,
        "listed_at": _iso(item.listed_at),
        "delisted_at": _iso(item.delisted_at),
        "deadline_at": _iso(item.deadline_at),
    }


def item_page(db: Database, item_id: int, now: datetime) -> dict[str, Any]:
    """An item with its full history: notices, answers, checks and the measures citing it."""
    from takedown.web.regulator_api import item_doc

    doc = item_doc(db, item_id)
    with db.reading() as session:
        item = session.get(Item, item_id)
        assert item is not None  # item_doc found it
        slug = session.scalar(select(Platform.slug).where(Platform.id == item.platform_id))
        history = _item_history(session, item)
    return {"item": {**doc, **_item_row(item, slug, now)}, **history}


def _item_history(session: Session, item: Item) -> dict[str, Any]:
    notices = session.execute(
        select(Notice)
        .join(NoticeItem, NoticeItem.notice_id == Notice.id)
        .where(NoticeItem.item_id == item.id)
        .order_by(Notice.issued_at, Notice.id)
    ).scalars()
    responses = session.scalars(
        select(Response).where(Response.item_id == item.id).order_by(Response.at, Response.id)
    )
    checks = session.execute(
        select(Check, VantagePoint.name)
        .outerjoin(VantagePoint, VantagePoint.id == Check.vantage_id)
        .where(Check.item_id == item.id)
        .order_by(Check.at.desc(), Check.id.desc())
        .limit(HISTORY_ROWS)
    ).all()
    citing = []
    if item.platform_id is not None:  # the measures whose legal basis counts this item
        listed = and_(
            Measure.platform_id == item.platform_id,
            Measure.proposed_at >= item.listed_at,
        )
        if item.delisted_at is not None:
            listed = and_(listed, Measure.proposed_at < item.delisted_at)
        citing = list(session.scalars(select(Measure).where(listed).order_by(Measure.id)))
    return {
        "notices": [
            {
                "id": n.id,
                "kind": n.kind,
                "issued_at": _iso(n.issued_at),
                "deadline_at": _iso(n.deadline_at),
                "delivery_state": n.delivery_state,
                "attempts": n.attempts,
                "acknowledged_at": _iso(n.acknowledged_at),
            }
            for n in notices
        ],
        "responses": [
            {"id": r.id, "action": r.action, "reason": r.reason, "at": _iso(r.at)}
            for r in responses
        ],
        "checks": [
            {
                "at": _iso(c.at),
                "vantage": vantage,
                "verdict": c.verdict,
                "status": c.status,
                "error": c.error,
            }
            for c, vantage in checks
        ],
        "measures": [
            {
                "id": m.id,
                "action": describe_action(m.action, m.rate_kbps),
                "state": m.state,
                "proposed_at": _iso(m.proposed_at),
            }
            for m in citing
        ],
    }


# --- notices --------------------------------------------------------------------------------


def notices_page(
    db: Database,
    now: datetime,
    *,
    platform: str | None = None,
    state: str | None = None,
    after: int | None = None,
) -> dict[str, Any]:
    """One page of notices with delivery state, attempts and acknowledgement."""
    from takedown.model import DeliveryState
    from takedown.notices.outbox import list_notices

    states = [s.value for s in DeliveryState]
    if state and state not in states:
        raise InputError(f"unknown state {state!r}; known: {', '.join(states)}", where="state")
    records = list_notices(
        db, now=now, platform=platform or None, state=state or None, after=after, limit=PAGE + 1
    )
    more = len(records) > PAGE
    records = records[:PAGE]
    return {
        "query": {k: v for k, v in (("platform", platform), ("state", state)) if v},
        "notices": [{**r.as_json(now), "overdue": r.overdue(now)} for r in records],
        "next_after": records[-1].id if more else None,
        "states": states,
    }


# --- measures -------------------------------------------------------------------------------


def measures_queue(db: Database, now: datetime) -> dict[str, Any]:
    """Proposed measures first (the queue), then those in force, then the last ended."""
    from takedown.policy.records import list_measures

    records = list_measures(db, at=now)
    with db.reading() as session:
        approvals: dict[int, list[str]] = {}
        for measure_id, by in session.execute(
            select(Approval.measure_id, Approval.by).order_by(Approval.at)
        ):
            approvals.setdefault(measure_id, []).append(by)

    def row(m: Any) -> dict[str, Any]:
        return {**_measure_row(m), "approvals": approvals.get(m.id, [])}

    ended = [m for m in records if m.state not in (MeasureState.PROPOSED, MeasureState.ACTIVE)]
    return {
        "proposed": [row(m) for m in records if m.state == MeasureState.PROPOSED],
        "active": [row(m) for m in records if m.state == MeasureState.ACTIVE],
        "ended": [row(m) for m in reversed(ended[-PAGE:])],
    }


def may_decide(db: Database, measure_id: int, actor: Actor) -> tuple[bool, str | None]:
    """Whether ``actor`` may approve or reject the measure now, and if not why: the answer
    of ``policy.measures.four_eyes`` itself (the console shows its buttons by it; the POST
    asks it again)."""
    from takedown.policy.measures import four_eyes

    with db.reading() as session:
        m = session.get(Measure, measure_id)
        if m is None:
            raise NotFound(f"no measure {measure_id}", where="ID")
        approved_by = session.scalars(select(Approval.by).where(Approval.measure_id == m.id)).all()
        try:
            four_eyes(actor, m, approved_by)
        except TakedownError as exc:
            return False, exc.message
    return True, None


def measure_page(
    db: Database, measure_id: int, now: datetime, actor: Actor, public_url: str
) -> dict[str, Any]:
    """A measure: its rule and the figures that fired it, its legal basis, the directive it
    compiles to with its collateral report, the approvals so far and its events."""
    from takedown.feed.directives import to_dict
    from takedown.feed.publisher import measure_check
    from takedown.policy.records import explain

    explanation = explain(db, measure_id).as_json()
    compiled, report = measure_check(db, measure_id, now, public_url=public_url)
    may, why_not = may_decide(db, measure_id, actor)
    m = explanation
    return {
        "measure": {
            **m,
            "describe": describe_action(m["action"], m["rate_kbps"]),
            "scope_text": describe_scope(m["scope"]),
        },
        "directives": to_dict(compiled.directives)["directives"],
        "collateral": {**report.as_json(), "lines": report.lines()},
        "may_decide": may,
        "why_not": why_not,
        "may_lift": actor.may("write") and m["state"] in ("proposed", "active"),
    }
