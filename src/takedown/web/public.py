"""Public pages under ``/public/…``: why something is restricted, and how to appeal.

No authentication. Each page is HTML, or JSON with ``Accept: application/json`` or
``?format=json``. What the public sees is chosen field by field: the measure, its rule and
the figures that fired it, the legal decisions behind it as references and counts by
category — never an item's URL or target (child abuse material above all), never a token.
A measure that has not taken effect (awaiting approval) is not public.

Examples::

    curl http://127.0.0.1:8470/public/
    curl http://127.0.0.1:8470/public/measures/3?format=json
    curl "http://127.0.0.1:8470/public/lookup?host=pbs.twimg.com"
    curl -H "Accept: application/json" "http://127.0.0.1:8470/public/lookup?decision=RKN-1"
"""

from __future__ import annotations

import html
import ipaddress
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool

from takedown import config as config_mod
from takedown.errors import InputError, NotFound, PatternError
from takedown.model import Directive, MeasureState
from takedown.store.db import Database
from takedown.store.schema import AuditHead, Item, Measure, Platform, PlatformHost

DEFAULT_APPEAL = (
    "A platform, an author or a user affected by a measure may ask the regulator to review "
    "it, and may challenge the decision behind it in court."
)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CACHE_SLOT = timedelta(seconds=60)


@dataclass(frozen=True)
class PublicSettings:
    """The public base URL (None: the request's own) and how to appeal."""

    public_url: str | None = None
    appeal_text: str = DEFAULT_APPEAL
    appeal_url: str | None = None


def esc(value: object) -> str:
    """HTML-escape anything (None as a dash)."""
    return "-" if value is None else html.escape(str(value), quote=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _live(now: datetime) -> tuple[Any, ...]:
    return (Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now))


# --- documents (plain data; the HTML is rendered from these) -------------------------------


def _started(m: Measure, now: datetime) -> bool:
    return m.starts_at is not None and m.starts_at <= now


def _state_now(m: Measure, now: datetime) -> str:
    from takedown.policy.measures import state_at

    return state_at(m, now) or MeasureState.PROPOSED.value


def measure_doc(
    db: Database, measure_id: int, now: datetime, settings: PublicSettings, base: str
) -> dict[str, Any]:
    """The public account of one measure that has taken effect."""
    from takedown.policy.measures import explain

    with db.reading() as session:
        m = session.get(Measure, measure_id)
        if m is None or not _started(m, now):
            raise NotFound(f"no public measure {measure_id}", where="id")
        platform = session.get(Platform, m.platform_id)
        classes = set(m.classes or [])
        hosts = [
            {"pattern": h.pattern, "content_class": h.content_class}
            for h in session.scalars(
                select(PlatformHost)
                .where(PlatformHost.platform_id == m.platform_id)
                .order_by(PlatformHost.pattern)
            )
            if not classes or h.content_class in classes
        ]
        state = _state_now(m, now)
    doc = explain(db, measure_id).as_json()
    figures = doc.get("figures") or {}
    basis = doc.get("legal_basis") or {}
    return {
        "id": m.id,
        "platform": {
            "slug": platform.slug if platform else None,
            "name": platform.name if platform else None,
        },
        "action": m.action,
        "rate_kbps": m.rate_kbps,
        "content_classes": sorted(classes) or ["*"],
        "hosts": hosts,
        "scope_percent": {k: float(v) for k, v in sorted((m.scope or {}).items())},
        "state": state,
        "in_force": state == MeasureState.ACTIVE.value,
        "since": _iso(m.starts_at),
        "review_at": _iso(m.review_at),
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
        "legal_basis": {
            "items": basis.get("items", 0),
            "by_category": basis.get("by_category", {}),
            "decisions_total": basis.get("decisions_total", 0),
            "decisions": [
                {k: d.get(k) for k in ("decision", "authority", "date", "items", "by_category")}
                for d in basis.get("decisions", [])
            ],
        },
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
        "appeal": {"text": settings.appeal_text, "url": settings.appeal_url},
        "url": f"{base}/public/measures/{m.id}",
    }


def index_doc(db: Database, now: datetime, base: str) -> dict[str, Any]:
    """Measures in force now, and how many register decisions the network blocks."""
    with db.reading() as session:
        rows = session.execute(
            select(Measure, Platform.slug, Platform.name)
            .join(Platform, Platform.id == Measure.platform_id)
            .order_by(Measure.id)
        ).all()
        decisions = session.scalar(
            select(func.count(func.distinct(Item.decision_ref))).where(
                Item.platform_id.is_(None), *_live(now)
            )
        )
    in_force = []
    for m, slug, name in rows:
        if _state_now(m, now) != MeasureState.ACTIVE.value or not _started(m, now):
            continue
        in_force.append(
            {
                "id": m.id,
                "platform": {"slug": slug, "name": name},
                "action": m.action,
                "rate_kbps": m.rate_kbps,
                "content_classes": sorted(m.classes or []) or ["*"],
                "scope_percent": {k: float(v) for k, v in sorted((m.scope or {}).items())},
                "since": _iso(m.starts_at),
                "review_at": _iso(m.review_at),
                "rule": m.rule,
                "decision": m.decision_ref,
                "url": f"{base}/public/measures/{m.id}",
            }
        )
    return {
        "as_of": now.isoformat(),
        "measures_in_force": in_force,
        "register_decisions": int(decisions or 0),
    }


class _Compiled:
    """Directives compiled at a moment and a matcher over their rules."""

    def __init__(self, directives: tuple[Directive, ...]) -> None:
        from takedown.match import Matcher, parse_host_rule, parse_ip_rule

        self.directives = directives
        hosts: list[tuple[str, tuple[int, str]]] = []
        ips: list[tuple[str, tuple[int, str]]] = []
        for i, d in enumerate(directives):
            for h in d.hosts:
                try:  # a rule the matcher refuses matches nothing here either
                    parse_host_rule(h.pattern)
                except PatternError:
                    continue
                hosts.append((h.pattern, (i, h.content_class)))
            for r in d.ip_ranges:
                try:
                    parse_ip_rule(r)
                except PatternError:
                    continue
                ips.append((r, (i, r)))
        self.matcher = Matcher.compile(hosts, ips)


class DirectiveCache:
    """The directive set compiled at now, recompiled when the audit log moves (every change
    writes an event) or a minute of clock time passes; lookups are public and frequent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._value: _Compiled | None = None

    def get(self, db: Database, now: datetime, public_url: str) -> _Compiled:
        from takedown.feed.compile import compile_directives

        slot = int(now.timestamp() // CACHE_SLOT.total_seconds())
        with self._lock:
            with db.reading() as session:
                seq = session.scalar(select(AuditHead.seq).where(AuditHead.id == 1))
                key = (seq, slot, public_url)
                if key != self._key or self._value is None:
                    compiled = compile_directives(session, now, public_url=public_url)
                    self._value = _Compiled(compiled.directives.directives)
                    self._key = key
            return self._value


def _categories_of(db: Database, refs: set[str], now: datetime) -> dict[str, dict[str, int]]:
    """Live register items per decision and category (counts only)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    if not refs:
        return {}
    with db.reading() as session:
        for ref, cat, n in session.execute(
            select(Item.decision_ref, Item.category, func.count())
            .where(Item.decision_ref.in_(sorted(refs)), *_live(now))
            .group_by(Item.decision_ref, Item.category)
        ):
            out[ref][cat] = int(n)
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def _measure_why(db: Database, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    with db.reading() as session:
        rows = session.execute(
            select(Measure.id, Measure.rule, Measure.reason, Measure.decision_ref, Platform.slug)
            .join(Platform, Platform.id == Measure.platform_id)
            .where(Measure.id.in_(sorted(ids)))
        ).all()
    return {
        mid: {"platform": slug, "rule": rule, "reason": reason, "decision": ref}
        for mid, rule, reason, ref, slug in rows
    }


def _directive_public(d: Directive, now: datetime, base: str) -> dict[str, Any]:
    return {
        "id": d.id,
        "action": str(d.action),
        "rate_kbps": d.rate_kbps,
        "scope_percent": dict(d.scope),
        "in_force": d.in_force(now),
        "valid_from": _iso(d.valid_from),
        "expires": _iso(d.expires),
        "decisions": list(d.decisions),
        "measure_id": d.measure_id,
        "url": (
            f"{base}/public/measures/{d.measure_id}"
            if d.measure_id is not None
            else f"{base}/public/lookup?decision={quote(d.decisions[0], safe='')}"
            if d.decisions
            else None
        ),
    }


def lookup_doc(
    db: Database,
    cache: DirectiveCache,
    now: datetime,
    base: str,
    *,
    host: str | None,
    decision: str | None,
) -> dict[str, Any]:
    """Is ``host`` restricted now, by which directives and why; or what ``decision`` does."""
    from takedown.match.matcher import normalised_query

    if (host is None) == (decision is None):
        raise InputError("give exactly one of host= or decision=", where="query")
    compiled = cache.get(db, now, base)
    hits: dict[int, list[dict[str, str]]] = defaultdict(list)
    query: dict[str, Any]
    if host is not None:
        host = host.strip()
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            addr = None
        if addr is not None:
            query = {"host": host, "normalised": str(addr)}
            for rule, (i, _r) in compiled.matcher.explain_ip(str(addr)):
                hits[i].append({"rule": str(rule)})
        else:
            name = normalised_query(host)
            if name is None:
                raise InputError(f"not a host name: {host[:200]!r}", where="host")
            query = {"host": host, "normalised": name}
            for pattern, (i, cls) in compiled.matcher.explain_host(name):
                hits[i].append({"rule": pattern, "content_class": cls})
    else:
        assert decision is not None
        decision = decision.strip()
        query = {"decision": decision}
        for i, d in enumerate(compiled.directives):
            if decision in d.decisions:
                n_host, n_ip = len(d.hosts), len(d.ip_ranges)
                hits[i].append({"rule": f"{n_host} host rule(s), {n_ip} address rule(s)"})
    found = [compiled.directives[i] for i in sorted(hits)]
    refs = {r for d in found for r in d.decisions if not r.startswith("ladder rule ")}
    if decision is not None:
        refs.add(decision)
    why_items = _categories_of(db, refs, now)
    why_measures = _measure_why(db, {d.measure_id for d in found if d.measure_id is not None})
    if decision is not None and not found and decision not in why_items:
        raise NotFound(f"no decision {decision[:200]!r} in force", where="decision")
    out = []
    for i in sorted(hits):
        d = compiled.directives[i]
        entry = _directive_public(d, now, base)
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


# --- HTML -----------------------------------------------------------------------------------

CSS = """
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:1.8rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;font-size:.85rem;
font-weight:600}.active{background:#fde2e1;color:#8a1c14}.ended{background:#e6f4ea;
color:#1e5631}.proposed{background:#fff4ce;color:#6b5200}
.lead{font-size:1.1rem}.muted{color:#666;font-size:.9rem}code{background:#f4f4f4;
padding:0 .2rem}footer{margin-top:3rem;color:#666;font-size:.85rem}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}"
        '<footer>takedown public register · <a href="/public/">measures in force</a> · '
        '<a href="/public/lookup">look up a host</a></footer></body></html>'
    )


def _badge(state: str) -> str:
    cls = {"active": "active", "proposed": "proposed"}.get(state, "ended")
    label = {"active": "in force"}.get(state, state)
    return f'<span class="badge {cls}">{esc(label)}</span>'


def _what(action: str, rate: int | None) -> str:
    return f"throttled to {esc(rate)} kbit/s" if action == "throttle" else "blocked"


def _scope(scope: dict[str, float]) -> str:
    return ", ".join(f"{esc(f'{v:g}')}% of {esc(k)} subscribers" for k, v in scope.items()) or "-"


def _kv_table(rows: list[tuple[str, object]]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        + ("</table>")
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cat(code: str) -> str:
    return config_mod.default().categories.get(code, code)


def _classes(classes: list[str]) -> str:
    return "all" if classes == ["*"] else ", ".join(classes)


def _cats(counts: dict[str, int]) -> str:
    return ", ".join(f"{_cat(c)}: {n}" for c, n in counts.items())


def measure_html(doc: dict[str, Any]) -> str:
    p = doc["platform"]
    what = _what(doc["action"], doc["rate_kbps"])
    title = f"Measure {doc['id']}: {p['name'] or p['slug']} {what}"
    hosts = "".join(
        f"<tr><td><code>{esc(h['pattern'])}</code></td><td>{esc(h['content_class'])}</td></tr>"
        for h in doc["hosts"]
    )
    why = doc["why"]
    fired = why["figures_read"] or {}
    snap = why["figures"] or {}
    parts = [
        f"<h1>Measure {esc(doc['id'])} {_badge(doc['state'])}</h1>",
        f'<p class="lead">{esc(p["name"] or p["slug"])} is {what} '
        f"({esc(_classes(doc['content_classes']))} content) "
        f"for {_scope(doc['scope_percent'])}.</p>",
        "<h2>What is restricted</h2>",
        _kv_table(
            [
                ("Platform", f"{p['name']} ({p['slug']})"),
                ("Action", doc["action"]),
                ("Rate", f"{doc['rate_kbps']} kbit/s" if doc["rate_kbps"] else None),
                ("Content classes", _classes(doc["content_classes"])),
                ("Scope", ", ".join(f"{k}: {v:g}%" for k, v in doc["scope_percent"].items())),
            ]
        ),
        f"<table><tr><th>host pattern</th><th>content class</th></tr>{hosts}</table>"
        if hosts
        else "",
        "<h2>When</h2>",
        _kv_table(
            [
                ("In force since", doc["since"]),
                ("Review", doc["review_at"]),
                ("Expires", doc["expires_at"] or "no end date: until lifted by a decision"),
                ("Lifted", doc["lifted_at"]),
                ("Lifted by decision", doc["lift_decision"]),
            ]
        ),
        "<h2>Why</h2>",
        f"<p>{esc(why['reason'])}</p>",
        _kv_table(
            [
                ("Ladder rule", why["rule"]),
                ("Ladder", why["ladder"]),
                ("Fired by", why["fired"]),
                ("Decision", why["decision"]),
            ]
        ),
    ]
    if fired:
        parts.append("<p>The figures the rule read when it fired:</p>")
        parts.append(_kv_table([(k, _fmt(v)) for k, v in fired.items()]))
    if snap:
        parts.append("<p>The platform's compliance figures at that moment:</p>")
        parts.append(_kv_table([(k, _fmt(v)) for k, v in snap.items()]))
    basis = doc["legal_basis"]
    parts.append("<h2>Legal decisions behind it</h2>")
    parts.append(
        f"<p>{esc(basis['items'])} register item(s) under {esc(basis['decisions_total'])} "
        "decision(s). Individual addresses of unlawful content are not published.</p>"
    )
    if basis["by_category"]:
        parts.append(
            "<table><tr><th>category</th><th>items</th></tr>"
            + "".join(
                f"<tr><td>{esc(_cat(c))}</td><td>{esc(n)}</td></tr>"
                for c, n in basis["by_category"].items()
            )
            + "</table>"
        )
    if basis["decisions"]:
        rows = "".join(
            f"<tr><td>{esc(d['decision'])}</td><td>{esc(d['authority'])}</td>"
            f"<td>{esc(d['date'])}</td><td>{esc(d['items'])}</td>"
            f"<td>{esc(_cats(d['by_category']))}</td></tr>"
            for d in basis["decisions"]
        )
        more = basis["decisions_total"] - len(basis["decisions"])
        parts.append(
            "<table><tr><th>decision</th><th>authority</th><th>date</th><th>items</th>"
            f"<th>by category</th></tr>{rows}</table>"
            + (f'<p class="muted">and {esc(more)} more decision(s)</p>' if more > 0 else "")
        )
    if doc["obligations"]:
        parts.append("<h2>Obligations</h2>")
        parts.append(
            "<table><tr><th>obligation</th><th>state</th><th>decision</th><th>since</th></tr>"
            + "".join(
                f"<tr><td>{esc(o['kind'])}</td><td>{esc(o['state'])}</td>"
                f"<td>{esc(o['decision'])}</td><td>{esc(o['at'])}</td></tr>"
                for o in doc["obligations"]
            )
            + "</table>"
        )
    parts.append("<h2>Approvals</h2>")
    applied = doc["applied_by"]
    people = [
        f"<tr><td>applied</td><td>{esc(applied['name'])}</td><td>{esc(applied['role'])}</td>"
        f"<td>{esc(doc['since'])}</td></tr>"
    ]
    people += [
        f"<tr><td>approved</td><td>{esc(a['name'])}</td><td>{esc(a['role'])}</td>"
        f"<td>{esc(a['at'])}</td></tr>"
        for a in doc["approvals"]
    ]
    parts.append(
        "<table><tr><th></th><th>by</th><th>role</th><th>at</th></tr>"
        + "".join(people)
        + "</table>"
    )
    links = [f'<a href="/public/measures/{int(i)}">measure {int(i)}</a>' for i in doc["supersedes"]]
    if links:
        parts.append(f"<p>Replaces {', '.join(links)}.</p>")
    if doc["superseded_by"] is not None:
        n = int(doc["superseded_by"])
        parts.append(f'<p>Replaced by <a href="/public/measures/{n}">measure {n}</a>.</p>')
    parts.append("<h2>How to appeal</h2>")
    parts.append(f"<p>{esc(doc['appeal']['text'])}</p>")
    if doc["appeal"]["url"]:
        parts.append(
            f'<p><a href="{esc(doc["appeal"]["url"])}">{esc(doc["appeal"]["url"])}</a></p>'
        )
    return _page(title, "".join(parts))


def index_html(doc: dict[str, Any], settings: PublicSettings) -> str:
    rows = "".join(
        f'<tr><td><a href="/public/measures/{int(m["id"])}">{int(m["id"])}</a></td>'
        f"<td>{esc(m['platform']['name'])}</td><td>{_what(m['action'], m['rate_kbps'])}</td>"
        f"<td>{esc(_classes(m['content_classes']))}</td><td>{_scope(m['scope_percent'])}</td>"
        f"<td>{esc(m['since'])}</td><td>{esc(m['review_at'])}</td></tr>"
        for m in doc["measures_in_force"]
    )
    table = (
        "<table><tr><th>measure</th><th>platform</th><th>what</th><th>content</th><th>scope</th>"
        f"<th>since</th><th>review</th></tr>{rows}</table>"
        if rows
        else "<p>No measure is in force.</p>"
    )
    body = (
        f"<h1>Network measures in force</h1><p class=muted>as of {esc(doc['as_of'])}</p>{table}"
        f"<p>Besides these, network operators block whole names or addresses listed under "
        f"{esc(doc['register_decisions'])} register decision(s).</p>"
        + _lookup_form("")
        + f"<h2>How to appeal</h2><p>{esc(settings.appeal_text)}</p>"
        + (
            f'<p><a href="{esc(settings.appeal_url)}">{esc(settings.appeal_url)}</a></p>'
            if settings.appeal_url
            else ""
        )
    )
    return _page("Network measures in force", body)


def _lookup_form(value: str) -> str:
    return (
        "<h2>Is a site restricted?</h2>"
        '<form method="get" action="/public/lookup"><label>Host name or address '
        f'<input name="host" value="{esc(value)}" size="40"></label> '
        '<button type="submit">Look up</button></form>'
    )


def lookup_html(doc: dict[str, Any]) -> str:
    q = doc["query"]
    subject = q.get("normalised") or q.get("decision")
    if "decision" in q:
        title = f"Decision {subject}"
        lead = (
            f"Decision <b>{esc(subject)}</b> is applied by {len(doc['directives'])} network "
            "directive(s) now."
        )
    elif doc["restricted"]:
        title = f"{subject} is restricted"
        lead = f"<b>{esc(subject)}</b> is restricted now."
    else:
        title = f"{subject} is not restricted"
        lead = f"<b>{esc(subject)}</b> is not restricted now."
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="lead">{lead}</p>',
        f"<p class=muted>as of {esc(doc['as_of'])}</p>",
    ]
    for d in doc["directives"]:
        state = "active" if d["in_force"] else "proposed"
        matched = ", ".join(
            m["rule"] + (f" ({m['content_class']})" if m.get("content_class") else "")
            for m in d["matched"]
        )
        parts.append(f"<h2>Directive {esc(d['id'])} {_badge(state)}</h2>")
        rows: list[tuple[str, object]] = [
            ("Action", "throttle" if d["action"] == "throttle" else "block"),
            ("Rate", f"{d['rate_kbps']} kbit/s" if d["rate_kbps"] else None),
            ("Scope", ", ".join(f"{k}: {v:g}%" for k, v in d["scope_percent"].items())),
            ("Matched by", matched),
            ("Valid from", d["valid_from"]),
            ("Expires", d["expires"]),
            ("Decisions", ", ".join(d["decisions"])),
        ]
        why = d["why"]
        if d["measure_id"] is not None:
            rows += [
                ("Platform", why.get("platform")),
                ("Ladder rule", why.get("rule")),
                ("Reason", why.get("reason")),
            ]
        parts.append(_kv_table(rows))
        if d["url"]:
            label = "the measure" if d["measure_id"] is not None else "the decision"
            parts.append(f'<p>Details: <a href="{esc(d["url"])}">{label}</a></p>')
        for dec in why.get("decisions", []):
            cats = ", ".join(f"{_cat(c)}: {n}" for c, n in dec["items_by_category"].items())
            parts.append(
                f"<p>Decision {esc(dec['decision'])}: register items by category: "
                f"{esc(cats or 'none listed now')}.</p>"
            )
    if "decision" in q and doc.get("register_items_by_category"):
        cats = ", ".join(f"{_cat(c)}: {n}" for c, n in doc["register_items_by_category"].items())
        parts.append(f"<p>Register items under this decision: {esc(cats)}.</p>")
    parts.append(_lookup_form(q.get("host", "")))
    return _page(title, "".join(parts))


# --- routes ---------------------------------------------------------------------------------


def wants_json(request: Request, fmt: str | None) -> bool:
    """``?format=json`` or an Accept header asking for JSON (and not for HTML)."""
    if fmt is not None:
        if fmt not in ("json", "html"):
            raise InputError("format must be json or html", where="format")
        return fmt == "json"
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def _respond(request: Request, fmt: str | None, doc: dict[str, Any], render: Any) -> Response:
    if wants_json(request, fmt):
        return JSONResponse(jsonable_encoder(doc), headers=HEADERS)
    return HTMLResponse(render(doc), headers=HEADERS)


def make_router(settings: PublicSettings | None = None) -> APIRouter:
    """The ``/public`` router (no authentication)."""
    settings = settings or PublicSettings()
    cache = DirectiveCache()
    router = APIRouter(prefix="/public", tags=["public"])

    def base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, format: str | None = Query(None)) -> Response:
        """Measures in force now, with links."""
        now = request.app.state.clock.now()
        doc = await run_in_threadpool(index_doc, request.app.state.db, now, base(request))
        return _respond(request, format, doc, lambda d: index_html(d, settings))

    @router.get("/measures/{measure_id}", response_class=HTMLResponse)
    async def measure(
        request: Request, measure_id: int, format: str | None = Query(None)
    ) -> Response:
        """What a measure restricts, since and until when, why, on what decisions; appeal."""
        now = request.app.state.clock.now()
        doc = await run_in_threadpool(
            measure_doc, request.app.state.db, measure_id, now, settings, base(request)
        )
        return _respond(request, format, doc, measure_html)

    @router.get("/lookup", response_class=HTMLResponse)
    async def lookup(
        request: Request,
        host: str | None = Query(None, max_length=1000, description="a host name or address"),
        decision: str | None = Query(None, max_length=200, description="a decision reference"),
        format: str | None = Query(None),
    ) -> Response:
        """Is this host restricted now, by which directive(s), and why."""
        if host is None and decision is None and not wants_json(request, format):
            return HTMLResponse(_page("Look up a host", _lookup_form("")), headers=HEADERS)
        now = request.app.state.clock.now()
        doc = await run_in_threadpool(
            lambda: lookup_doc(
                request.app.state.db, cache, now, base(request), host=host, decision=decision
            )
        )
        return _respond(request, format, doc, lookup_html)

    return router
