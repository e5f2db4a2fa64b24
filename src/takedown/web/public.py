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
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown.errors import InputError, TakedownError
from takedown.transparency import PublicSettings, index_doc, lookup_doc, measure_doc
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
        return respond(request, format, doc, "index.html", settings=settings)

    @router.get("/measures/{measure_id}", response_class=HTMLResponse)
    async def measure(
        request: Request, measure_id: RowId, format: str | None = Query(None)
    ) -> Response:
        """What a measure restricts, since and until when, why, on what decisions; appeal."""
        now = request.app.state.clock.now()
        doc = await run_in_threadpool(
            measure_doc, request.app.state.db, measure_id, now, settings, base(request)
        )
        return respond(request, format, doc, "measure.html", settings=settings)

    @router.get("/lookup", response_class=HTMLResponse)
    async def lookup(
        request: Request,
        host: str | None = Query(None, max_length=1000, description="a host name or address"),
        decision: str | None = Query(None, max_length=200, description="a decision reference"),
        format: str | None = Query(None),
    ) -> Response:
        """Is this host restricted now, by which directive(s), and why."""
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
