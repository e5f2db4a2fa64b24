"""Public transparency: what the public is told about measures and directives, as plain data.

The documents behind ``/public/…`` (``web/public.py`` renders them as HTML or JSON): the
measures in force, one measure's public account, and the lookup "is this host restricted
now, by which directive, and why". What the public sees is chosen field by field: the
measure, its rule and the figures that fired it, the legal decisions behind it as
references and counts by category — never an item's URL or target, never a token. A
measure that has not taken effect (awaiting approval) is not public. Each measure's
account links the form to contest it and counts the appeals against it with their
decided outcomes (``takedown.appeals``); an appellant's contact is never in it.

The lookup matches with the enforcement point's own index (``enforce.decide.compile_index``)
and marks the directive(s) that win with its own ranking (``enforce.decide.strictest``),
so the public answer is by construction what the network does.

Example::

    compiled = public_index(directives)  # the app keeps one per version (web.lookup_index)
    doc = lookup_doc(db, compiled, now, "https://register.example", host="t.co", decision=None)
    [winner] = [d for d in doc["directives"] if d["applies"]]
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from takedown.enforce.decide import Index, compile_index, strictest
from takedown.errors import InputError, NotFound, PatternError
from takedown.match import parse_host_rule, parse_ip_rule
from takedown.match.matcher import normalised_query
from takedown.model import Directive, MeasureRecord, MeasureState
from takedown.store.db import Database
from takedown.store.schema import Item, Measure, Platform, PlatformHost

DEFAULT_APPEAL = (
    "A platform, an author or a user affected by a measure may ask the regulator to review "
    "it, and may challenge the decision behind it in court."
)
APPEAL_FORM = "/public/appeals/new"  # ?measure=ID or ?item=ID (web.appeals)
LADDER_REF = "ladder rule "  # prefix of the pseudo-decision a ladder measure's directive carries


@dataclass(frozen=True)
class PublicSettings:
    """The public base URL (None: the request's own) and how to appeal."""

    public_url: str | None = None
    appeal_text: str = DEFAULT_APPEAL
    appeal_url: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _live(now: datetime) -> tuple[Any, ...]:
    return (Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now))


def _started(m: MeasureRecord, now: datetime) -> bool:
    return m.starts_at is not None and m.starts_at <= now


def _state_now(m: MeasureRecord, now: datetime) -> str:
    return (m.state_at(now) or MeasureState.PROPOSED).value


def _measure_head(m: MeasureRecord, platform_name: str | None, base: str) -> dict[str, Any]:
    """What every public account of a measure starts with: what, where, since when, link."""
    return {
        "id": m.id,
        "platform": {"slug": m.platform, "name": platform_name},
        "action": m.action.value,
        "rate_kbps": m.rate_kbps,
        "describe": m.describe(),
        "content_classes": sorted(m.classes) or ["*"],
        "scope_percent": dict(sorted(m.scope.items())),
        "since": _iso(m.starts_at),
        "review_at": _iso(m.review_at),
        "expires_at": _iso(m.expires_at),
        "url": f"{base}/public/measures/{m.id}",
        "appeal_form": appeal_form(base, m.id),
    }


def appeal_form(base: str, measure_id: int) -> str:
    """Where the public contests measure ``measure_id``."""
    return f"{base}{APPEAL_FORM}?measure={measure_id}"


# --- measures -------------------------------------------------------------------------------


def _public_measure(
    session: Session, measure_id: int, now: datetime
) -> tuple[MeasureRecord, str | None, list[dict[str, str]]]:
    """A measure that has taken effect, its platform's display name and the hosts it covers."""
    from takedown.policy.measures import measure_record

    row = session.execute(
        select(Measure, Platform.slug, Platform.name)
        .join(Platform, Platform.id == Measure.platform_id)
        .where(Measure.id == measure_id)
    ).first()
    if row is None or not _started(record := measure_record(row[0], row[1]), now):
        raise NotFound(f"no public measure {measure_id}", where="id")
    classes = set(record.classes)
    hosts = [
        {"pattern": h.pattern, "content_class": h.content_class}
        for h in session.scalars(
            select(PlatformHost)
            .where(PlatformHost.platform_id == row[0].platform_id)
            .order_by(PlatformHost.pattern)
        )
        if not classes or h.content_class in classes
    ]
    return record, row[2], hosts


def measure_doc(
    db: Database, measure_id: int, now: datetime, settings: PublicSettings, base: str
) -> dict[str, Any]:
    """The public account of one measure that has taken effect."""
    from takedown import appeals
    from takedown.policy.measures import explain

    with db.reading() as session:
        m, platform_name, hosts = _public_measure(session, measure_id, now)
        appealed = appeals.public_summary(session, measure_id)
    doc = explain(db, measure_id).as_json()
    figures = doc.get("figures") or {}
    state = _state_now(m, now)
    return {
        **_measure_head(m, platform_name, base),
        "hosts": hosts,
        "state": state,
        "in_force": state == MeasureState.ACTIVE.value,
        "expires_at": _iso(m.expires_at),
        "lifted_at": _iso(m.lifted_at),
        "lift_decision": m.lift_decision,
        "why": {
            "rule": m.rule,
            "ladder": m.ladder,
            "fired": figures.get("fired"),
            "figures_read": figures.get("read") or {},
            "figures": figures.get("snapshot") or {},
            "reason": m.reason,
            "decision": m.decision_ref,
        },
        "legal_basis": _legal_basis(doc.get("legal_basis") or {}),
        "obligations": [
            {"kind": o["kind"], "state": o["state"], "decision": o["decision"], "at": _iso(o["at"])}
            for o in doc.get("obligations", [])
        ],
        "applied_by": {"name": m.created_by, "role": "ladder" if m.rule else "regulator"},
        "approvals": [
            {"name": a["by"], "role": "approver", "at": _iso(a["at"])}
            for a in doc.get("approvals", [])
        ],
        "supersedes": [c["id"] for c in doc.get("supersedes", [])],
        "superseded_by": doc.get("superseded_by"),
        "appeal": {
            "text": settings.appeal_text,
            "url": settings.appeal_url,
            "form": appeal_form(base, m.id),
        },
        # counts and decided outcomes only: never an appellant, their grounds or contact
        "appeals": appealed,
    }


def _legal_basis(basis: dict[str, Any]) -> dict[str, Any]:
    """The decisions behind a measure as references and counts only (never an item)."""
    return {
        "items": basis.get("items", 0),
        "by_category": basis.get("by_category", {}),
        "decisions_total": basis.get("decisions_total", 0),
        "decisions": [
            {k: d.get(k) for k in ("decision", "authority", "date", "items", "by_category")}
            for d in basis.get("decisions", [])
        ],
    }


def _measures_in_force(session: Session, now: datetime) -> list[tuple[MeasureRecord, str]]:
    """Every measure in force at ``now`` as a record, with its platform's display name."""
    from takedown.policy.measures import measure_record

    rows = session.execute(
        select(Measure, Platform.slug, Platform.name)
        .join(Platform, Platform.id == Measure.platform_id)
        .order_by(Measure.id)
    ).all()
    records = [(measure_record(m, slug), name) for m, slug, name in rows]
    return [
        (m, name)
        for m, name in records
        if _state_now(m, now) == MeasureState.ACTIVE.value and _started(m, now)
    ]


def register_decisions(session: Session, now: datetime) -> int:
    """How many register decisions list live items no platform answers for."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Item.decision_ref))).where(
                Item.platform_id.is_(None), *_live(now)
            )
        )
        or 0
    )


def index_doc(
    db: Database,
    now: datetime,
    base: str,
    audit_head: dict[str, Any] | None = None,
    decisions: int | None = None,
) -> dict[str, Any]:
    """Measures in force now, how many register decisions the network blocks (``decisions``
    when the caller has it: the lookup index counts them once per version), and the
    audit chain head signed into the latest feed publication (``{"seq", "hash"}``, None
    when the app serves no feed or it carries no head)."""
    with db.reading() as session:
        in_force = _measures_in_force(session, now)
        if decisions is None:
            decisions = register_decisions(session, now)
    return {
        "as_of": now.isoformat(),
        "measures_in_force": [
            {**_measure_head(m, name, base), "rule": m.rule, "decision": m.decision_ref}
            for m, name in in_force
        ],
        "register_decisions": decisions,
        "audit_head": audit_head,
    }


# --- the directive set and the lookup --------------------------------------------------------


def _matchable(d: Directive) -> Directive:
    """``d`` without the rules the matcher refuses: such a rule matches nothing here, as it
    matches nothing at the enforcement point, and must not break the public pages."""

    def host_ok(pattern: str) -> bool:
        try:
            parse_host_rule(pattern)
        except PatternError:
            return False
        return True

    def ip_ok(rule: str) -> bool:
        try:
            parse_ip_rule(rule)
        except PatternError:
            return False
        return True

    hosts = tuple(h for h in d.hosts if host_ok(h.pattern))
    ips = tuple(r for r in d.ip_ranges if ip_ok(r))
    if len(hosts) == len(d.hosts) and len(ips) == len(d.ip_ranges):
        return d
    return dataclasses.replace(d, hosts=hosts, ip_ranges=ips)


@dataclass(frozen=True)
class PublicIndex:
    """The directive set as published (``directives``, every rule) and the enforcement
    point's index over the rules it accepts (same positions)."""

    directives: tuple[Directive, ...]
    index: Index


def public_index(directives: tuple[Directive, ...]) -> PublicIndex:
    """Compile ``directives`` for lookups as the enforcement point does, dropping bad rules."""
    return PublicIndex(directives, compile_index(_matchable(d) for d in directives))


def _categories_of(session: Session, refs: set[str], now: datetime) -> dict[str, dict[str, int]]:
    """Live register items per decision and category (counts only)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    if not refs:
        return {}
    for ref, cat, n in session.execute(
        select(Item.decision_ref, Item.category, func.count())
        .where(Item.decision_ref.in_(sorted(refs)), *_live(now))
        .group_by(Item.decision_ref, Item.category)
    ):
        out[ref][cat] = int(n)
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def _measure_why(session: Session, ids: set[int]) -> dict[int, dict[str, Any]]:
    """Why each measure was taken (its platform, ladder rule, reason and decision) and until
    when it holds: its own review and end dates, as its public page gives them (a
    directive's ``expires`` is the feed's rolling horizon, not the measure's end)."""
    if not ids:
        return {}
    rows = session.execute(
        select(
            Measure.id,
            Measure.rule,
            Measure.reason,
            Measure.decision_ref,
            Platform.slug,
            Platform.name,
            Measure.review_at,
            Measure.expires_at,
        )
        .join(Platform, Platform.id == Measure.platform_id)
        .where(Measure.id.in_(sorted(ids)))
    ).all()
    return {
        mid: {
            "platform": slug,
            "platform_name": name,
            "rule": rule,
            "reason": reason,
            "decision": ref,
            "review_at": _iso(review_at),
            "expires_at": _iso(expires_at),
        }
        for mid, rule, reason, ref, slug, name, review_at, expires_at in rows
    }


def _directive_public(d: Directive, now: datetime, base: str) -> dict[str, Any]:
    return {
        "id": d.id,
        "action": str(d.action),
        "rate_kbps": d.rate_kbps,
        "describe": d.describe(),
        "scope_percent": dict(d.scope),
        "in_force": d.in_force(now),
        "valid_from": _iso(d.valid_from),
        "expires": _iso(d.expires),
        "decisions": list(d.decisions),
        "measure_id": d.measure_id,
        "appeal_form": appeal_form(base, d.measure_id) if d.measure_id is not None else None,
        "url": (
            f"{base}/public/measures/{d.measure_id}"
            if d.measure_id is not None
            else f"{base}/public/lookup?decision={quote(d.decisions[0], safe='')}"
            if d.decisions
            else None
        ),
    }


Hits = dict[int, list[dict[str, str]]]  # directive position -> the rules that matched


def host_hits(compiled: PublicIndex, host: str) -> tuple[dict[str, Any], Hits]:
    """The query as normalised and, per directive position, the rules matching ``host``."""
    hits: Hits = defaultdict(list)
    host = host.strip()
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        addr = None
    if addr is not None:
        for rule, key in compiled.index.matcher.explain_ip(str(addr)):
            hits[key.slot].append({"rule": str(rule)})
        return {"host": host, "normalised": str(addr)}, hits
    name = normalised_query(host)
    if name is None:
        raise InputError(f"not a host name: {host[:200]!r}", where="host")
    for pattern, key in compiled.index.matcher.explain_host(name):
        hits[key.slot].append({"rule": pattern, "content_class": key.content_class})
    return {"host": host, "normalised": name}, hits


def decision_hits(compiled: PublicIndex, decision: str) -> Hits:
    """Per directive position, a summary of its rules, for each directive citing ``decision``."""
    hits: Hits = defaultdict(list)
    for i, d in enumerate(compiled.directives):
        if decision in d.decisions:
            n_host, n_ip = len(d.hosts), len(d.ip_ranges)
            hits[i].append({"rule": f"{n_host} host rule(s), {n_ip} address rule(s)"})
    return hits


def winning_ids(found: list[Directive], now: datetime) -> set[str]:
    """The ids of the directives the network applies among ``found`` (all matching one
    host): the strictest in force, by the enforcement point's own ranking (to the
    subscribers within each directive's share; the public page names no subscriber)."""
    return {d.id for d in strictest(d for d in found if d.in_force(now))}


def lookup_doc(
    db: Database,
    compiled: PublicIndex,
    now: datetime,
    base: str,
    *,
    host: str | None,
    decision: str | None,
) -> dict[str, Any]:
    """Is ``host`` restricted now, by which directives and why; or what ``decision`` does.

    ``compiled`` is the directive set's lookup index (``web.lookup_index``); ``base``
    prefixes every link (the configured public URL, never read from the index).

    For a host, ``applies`` marks the directive(s) the network applies (``winning_ids``);
    for a decision, each directive in force applies to its own rules.
    """
    if (host is None) == (decision is None):
        raise InputError("give exactly one of host= or decision=", where="query")
    query: dict[str, Any]
    if host is not None:
        query, hits = host_hits(compiled, host)
    else:
        assert decision is not None
        decision = decision.strip()
        query, hits = {"decision": decision}, decision_hits(compiled, decision)
    found = [compiled.directives[i] for i in sorted(hits)]
    if host is not None:
        applied = winning_ids(found, now)
    else:
        applied = {d.id for d in found if d.in_force(now)}
    refs = {r for d in found for r in d.decisions if not r.startswith(LADDER_REF)}
    if decision is not None:
        refs.add(decision)
    with db.reading() as session:  # one transaction for both: this is the public hot path
        why_items = _categories_of(session, refs, now)
        why_measures = _measure_why(
            session, {d.measure_id for d in found if d.measure_id is not None}
        )
    if decision is not None and not found and decision not in why_items:
        raise NotFound(f"no decision {decision[:200]!r} in force", where="decision")
    out = []
    for i in sorted(hits):
        d = compiled.directives[i]
        entry = _directive_public(d, now, base)
        entry["applies"] = d.id in applied
        entry["matched"] = hits[i]
        if d.measure_id is not None:
            entry["why"] = why_measures.get(d.measure_id, {})
        else:
            entry["why"] = {
                "decisions": [
                    {"decision": r, "items_by_category": why_items.get(r, {})} for r in d.decisions
                ]
            }
        out.append(entry)
    doc: dict[str, Any] = {
        "as_of": now.isoformat(),
        "query": query,
        "restricted": any(e["in_force"] for e in out),
        "directives": out,
    }
    if decision is not None:
        doc["register_items_by_category"] = why_items.get(decision, {})
    return doc
