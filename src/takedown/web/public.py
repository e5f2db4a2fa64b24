"""Public pages under ``/public/…``: why something is restricted, and how to appeal.

No authentication. Each page is HTML, or JSON with ``Accept: application/json`` or
``?format=json``. What the public sees is chosen field by field: the measure, its rule and
the figures that fired it, the legal decisions behind it as references and counts by
category — never an item's URL or target (child abuse material above all), never a token.
A measure that has not taken effect (awaiting approval) is not public. The documents are
built by ``takedown.transparency``; this module has the routes, and the pages are the
templates under ``templates/public/`` (autoescaped; no inline style or script, see
``web.templating``). Appeals are filed from these pages (``web.appeals``).

Examples::

    curl http://127.0.0.1:8470/public/
    curl http://127.0.0.1:8470/public/measures/3?format=json
    curl "http://127.0.0.1:8470/public/lookup?host=pbs.twimg.com"
    curl -H "Accept: application/json" "http://127.0.0.1:8470/public/lookup?decision=RKN-1"
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown.errors import InputError, TakedownError
from takedown.transparency import PublicSettings, index_doc, lookup_doc, measure_doc
from takedown.web import models
from takedown.web.contract import (
    FORMAT_DOC,
    HOST_NAME,
    LEGAL_BASIS_EXAMPLE,
    NO_NUL,
    PUBLIC_ERRORS,
    api_fields,
    errors_doc,
    page_doc,
)
from takedown.web.deps import RowId
from takedown.web.i18n import negotiate, reader_of
from takedown.web.lookup_index import LookupIndex
from takedown.web.templating import HEADERS, render
from takedown.web.wording import Wording

log = logging.getLogger(__name__)


# --- what the templates (templates/public/) are given besides the document ------------------


def page(
    request: Request | None,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A public page from ``templates/public/TEMPLATE`` in the reader's language
    (``web.i18n``), with its plain words (``web.wording``) and the strict headers (and
    ``headers``)."""
    reader = reader_of(request) if request is not None else negotiate(None, None, "en")
    return render(
        request,
        f"public/{template}",
        {**reader.context(), **Wording(reader).helpers(), **context},
        status_code=status_code,
        headers={
            "Content-Language": reader.language,
            "Vary": "Accept-Language",
            **(headers or {}),
        },
    )


# --- routes ---------------------------------------------------------------------------------


def wants_json(request: Request, fmt: str | None) -> bool:
    """``?format=json`` or an Accept header asking for JSON (and not for HTML)."""
    if fmt is not None:
        if fmt not in ("json", "html"):
            raise InputError("format must be json or html", where="format")
        return fmt == "json"
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def respond(
    request: Request,
    fmt: str | None,
    doc: dict[str, Any],
    template: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """``doc`` as JSON (``wants_json``) or as the page ``template`` shows it."""
    if wants_json(request, fmt):
        return JSONResponse(jsonable_encoder(doc), status_code=status_code, headers=HEADERS)
    return page(request, template, status_code, doc=doc, **context)


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
    router = APIRouter(prefix="/public", tags=["public"], responses=errors_doc(*PUBLIC_ERRORS))

    def base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    @router.get("/", response_model=None, responses=page_doc(models.PublicIndex, INDEX_EXAMPLE))
    async def public_index(request: Request, format: Format = FORMAT) -> Response:
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
        return respond(request, format, doc, "index.html", settings=settings)

    @router.get(
        "/measures/{measure_id}",
        response_model=None,
        responses={**page_doc(models.PublicMeasure, MEASURE_EXAMPLE), **errors_doc(404)},
    )
    async def public_measure(
        request: Request, measure_id: RowId, format: Format = FORMAT
    ) -> Response:
        """What a measure restricts, since and until when, why, on what decisions; appeal."""
        now = request.app.state.clock.now()
        with api_fields({"id": "measure_id"}):
            doc = await run_in_threadpool(
                measure_doc, request.app.state.db, measure_id, now, settings, base(request)
            )
        return respond(request, format, doc, "measure.html", settings=settings)

    @router.get(
        "/lookup",
        response_model=None,
        responses={**page_doc(models.PublicLookup, LOOKUP_EXAMPLE), **errors_doc(404)},
    )
    async def public_lookup(
        request: Request,
        host: str | None = Query(
            None,
            max_length=1000,
            description="a host name or address",
            json_schema_extra={
                "anyOf": [
                    {"pattern": HOST_NAME, "maxLength": 253},
                    {"format": "ipv4"},
                    {"format": "ipv6"},
                    {"const": ""},
                ]
            },
            examples=["t.co"],
        ),
        decision: str | None = Query(
            None,
            max_length=200,
            pattern=NO_NUL,
            description="or a decision reference",
        ),
        format: Format = FORMAT,
    ) -> Response:
        """Is this host restricted now, by which directive(s), and why. Exactly one of
        ``host`` and ``decision`` (422 otherwise; empty is not given; the HTML page without
        either is the form)."""
        host, decision = host or None, decision or None  # an empty form field is none
        if host is None and decision is None and not wants_json(request, format):
            return page(request, "lookup_form.html", settings=settings)
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
        return respond(request, format, doc, "lookup.html", settings=settings)

    return router


Format = Literal["json", "html"] | None
FORMAT = Query(None, description=FORMAT_DOC, examples=["json"])

_HEAD_EXAMPLE = {
    "id": 3,
    "platform": {"slug": "twitter", "name": "Twitter"},
    "action": "throttle",
    "rate_kbps": 128,
    "describe": "throttle 128 kbit/s",
    "content_classes": ["*"],
    "scope_percent": {"fixed": 100.0, "mobile": 100.0},
    "since": "2021-03-10T00:00:00+00:00",
    "review_at": None,
    "expires_at": None,
    "url": "https://register.example/public/measures/3",
    "appeal_form": "https://register.example/public/appeals/new?measure=3",
}
INDEX_EXAMPLE = {
    "as_of": "2021-03-12T00:00:00+00:00",
    "measures_in_force": [{**_HEAD_EXAMPLE, "rule": "slowdown", "decision": None}],
    "register_decisions": 1,
    "audit_head": {"seq": 812, "hash": "9f2c" + "0" * 60},
}
MEASURE_EXAMPLE = {
    **_HEAD_EXAMPLE,
    "hosts": [{"pattern": "twitter.com", "content_class": "text"}],
    "state": "active",
    "in_force": True,
    "lifted_at": None,
    "lift_decision": None,
    "why": {
        "rule": "slowdown",
        "ladder": "ru-2021",
        "fired": "overdue >= 50",
        "figures_read": {"overdue": 56},
        "figures": {"platform": "twitter", "overdue": 56},
        "reason": "overdue items",
        "decision": None,
    },
    "legal_basis": LEGAL_BASIS_EXAMPLE,
    "obligations": [],
    "applied_by": {"name": "ladder-bot", "role": "ladder"},
    "approvals": [],
    "supersedes": [],
    "superseded_by": None,
    "appeal": {
        "text": "Write to the regulator's appeals office within 30 days.",
        "url": None,
        "form": "https://register.example/public/appeals/new?measure=3",
    },
    "appeals": {"filed": 1, "open": 1, "upheld": 0, "reversed": 0, "decisions": []},
}
LOOKUP_EXAMPLE = {
    "as_of": "2021-03-12T00:00:00+00:00",
    "query": {"host": "t.co", "normalised": "t.co"},
    "restricted": True,
    "directives": [
        {
            "id": "m3",
            "action": "throttle",
            "rate_kbps": 128,
            "describe": "throttle 128 kbit/s",
            "scope_percent": {"fixed": 100.0, "mobile": 100.0},
            "in_force": True,
            "valid_from": "2021-03-10T00:00:00+00:00",
            "expires": "2021-03-19T00:00:00+00:00",
            "decisions": ["RKN-1"],
            "measure_id": 3,
            "appeal_form": "https://register.example/public/appeals/new?measure=3",
            "url": "https://register.example/public/measures/3",
            "applies": True,
            "matched": [{"rule": "t.co", "content_class": "links"}],
            "why": {
                "platform": "twitter",
                "platform_name": "Twitter",
                "rule": "slowdown",
                "reason": "overdue items",
                "decision": None,
                "review_at": "2021-04-01T00:00:00+00:00",
                "expires_at": "2021-04-01T00:00:00+00:00",
            },
        }
    ],
}
