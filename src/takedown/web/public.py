"""Public pages under ``/public/…``: why something is restricted, and how to appeal.

No authentication. Each page is HTML, or JSON with ``Accept: application/json`` or
``?format=json``. What the public sees is chosen field by field: the measure, its rule and
the figures that fired it, the legal decisions behind it as references and counts by
category — never an item's URL or target (child abuse material above all), never a token.
A measure that has not taken effect (awaiting approval) is not public. The documents are
built by ``takedown.transparency``; this module has the routes and the HTML.

Examples::

    curl http://127.0.0.1:8470/public/
    curl http://127.0.0.1:8470/public/measures/3?format=json
    curl "http://127.0.0.1:8470/public/lookup?host=pbs.twimg.com"
    curl -H "Accept: application/json" "http://127.0.0.1:8470/public/lookup?decision=RKN-1"
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown import config as config_mod
from takedown.errors import InputError, TakedownError
from takedown.transparency import PublicSettings, index_doc, lookup_doc, measure_doc
from takedown.web.deps import RowId
from takedown.web.lookup_index import LookupIndex

log = logging.getLogger(__name__)

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def esc(value: object) -> str:
    """HTML-escape anything (None as a dash)."""
    return "-" if value is None else html.escape(str(value), quote=True)


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


def _measure_what(doc: dict[str, Any]) -> list[str]:
    p = doc["platform"]
    hosts = "".join(
        f"<tr><td><code>{esc(h['pattern'])}</code></td><td>{esc(h['content_class'])}</td></tr>"
        for h in doc["hosts"]
    )
    return [
        f"<h1>Measure {esc(doc['id'])} {_badge(doc['state'])}</h1>",
        f'<p class="lead">{esc(p["name"] or p["slug"])}: {esc(doc["describe"])} '
        f"({esc(_classes(doc['content_classes']))} content) "
        f"for {_scope(doc['scope_percent'])}.</p>",
        "<h2>What is restricted</h2>",
        _kv_table(
            [
                ("Platform", f"{p['name']} ({p['slug']})"),
                ("Action", doc["describe"]),
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
    ]


def _measure_why(why: dict[str, Any]) -> list[str]:
    parts = [
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
    if why["figures_read"]:
        parts.append("<p>The figures the rule read when it fired:</p>")
        parts.append(_kv_table([(k, _fmt(v)) for k, v in why["figures_read"].items()]))
    if why["figures"]:
        parts.append("<p>The platform's compliance figures at that moment:</p>")
        parts.append(_kv_table([(k, _fmt(v)) for k, v in why["figures"].items()]))
    return parts


def _legal_basis(basis: dict[str, Any]) -> list[str]:
    parts = [
        "<h2>Legal decisions behind it</h2>",
        f"<p>{esc(basis['items'])} register item(s) under {esc(basis['decisions_total'])} "
        "decision(s). Individual addresses of unlawful content are not published.</p>",
    ]
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
    return parts


def _measure_people(doc: dict[str, Any]) -> list[str]:
    parts = []
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
    return parts


def _measure_links(doc: dict[str, Any]) -> list[str]:
    parts = []
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
    return parts


def measure_html(doc: dict[str, Any]) -> str:
    """The public page of one measure."""
    p = doc["platform"]
    title = f"Measure {doc['id']}: {p['name'] or p['slug']}, {doc['describe']}"
    parts = [
        *_measure_what(doc),
        *_measure_why(doc["why"]),
        *_legal_basis(doc["legal_basis"]),
        *_measure_people(doc),
        *_measure_links(doc),
    ]
    return _page(title, "".join(parts))


def index_html(doc: dict[str, Any], settings: PublicSettings) -> str:
    rows = "".join(
        f'<tr><td><a href="/public/measures/{int(m["id"])}">{int(m["id"])}</a></td>'
        f"<td>{esc(m['platform']['name'])}</td><td>{esc(m['describe'])}</td>"
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
        + _anchor_html(doc.get("audit_head"))
        + _lookup_form("")
        + f"<h2>How to appeal</h2><p>{esc(settings.appeal_text)}</p>"
        + (
            f'<p><a href="{esc(settings.appeal_url)}">{esc(settings.appeal_url)}</a></p>'
            if settings.appeal_url
            else ""
        )
    )
    return _page("Network measures in force", body)


def _anchor_html(head: dict[str, Any] | None) -> str:
    if not head:
        return ""
    return (
        f"<p class=muted>Audit log anchored at event {esc(head['seq'])}, hash "
        f"<code>{esc(head['hash'])}</code> (signed into the latest directive feed "
        "publication).</p>"
    )


def _lookup_form(value: str) -> str:
    return (
        "<h2>Is a site restricted?</h2>"
        '<form method="get" action="/public/lookup"><label>Host name or address '
        f'<input name="host" value="{esc(value)}" size="40"></label> '
        '<button type="submit">Look up</button></form>'
    )


def _applies(d: dict[str, Any]) -> str:
    if d["applies"]:
        return "yes: the network applies it now"
    if not d["in_force"]:
        return "no: not in force now"
    return "no: a stricter directive applies"


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
            ("Action", d["describe"]),
            ("Applies", _applies(d)),
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


class PublishedHead:
    """The audit chain head signed into the feed's latest publication, re-read only when
    the targets metadata file changes (None: no feed, no head, or unreadable)."""

    def __init__(self, feed_dir: str | Path | None) -> None:
        self.feed_dir = Path(feed_dir) if feed_dir is not None else None
        self._seen: tuple[int, int] | None = None
        self._head: dict[str, Any] | None = None

    def get(self) -> dict[str, Any] | None:
        if self.feed_dir is None:
            return None
        from takedown.feed.repository import Repository

        try:
            st = os.stat(self.feed_dir / "metadata" / "targets.json")
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._seen:
            try:
                head = Repository(self.feed_dir).info().audit_head
            except (TakedownError, OSError, ValueError) as exc:
                log.warning("feed audit head unreadable: %s", exc)
                head = None
            self._head = head.to_json() if head is not None else None
            self._seen = stamp
        return self._head


def make_router(
    settings: PublicSettings | None,
    lookups: LookupIndex,
    *,
    feed_dir: str | Path | None = None,
) -> APIRouter:
    """The ``/public`` router (no authentication). Lookups read ``lookups``, which the app
    keeps current (``LookupIndex.run``); ``feed_dir``: where the audit head is published."""
    settings = settings or PublicSettings()
    anchor = PublishedHead(feed_dir)
    router = APIRouter(prefix="/public", tags=["public"])

    def base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, format: str | None = Query(None)) -> Response:
        """Measures in force now, with links."""
        now = request.app.state.clock.now()
        doc = await run_in_threadpool(
            lambda: index_doc(
                request.app.state.db,
                now,
                base(request),
                anchor.get(),
                lookups.register_decisions(),
            )
        )
        return _respond(request, format, doc, lambda d: index_html(d, settings))

    @router.get("/measures/{measure_id}", response_class=HTMLResponse)
    async def measure(
        request: Request, measure_id: RowId, format: str | None = Query(None)
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
                request.app.state.db,
                lookups.current(),
                now,
                base(request),
                host=host,
                decision=decision,
            )
        )
        return _respond(request, format, doc, lookup_html)

    return router
