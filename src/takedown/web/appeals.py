"""Public appeal pages under ``/public/appeals``: the form, the filing, the status page.

No authentication and no JavaScript: the form is a plain HTML form POSTed as
``application/x-www-form-urlencoded``; filing answers with the receipt, shown once, and
the address of the status page ``/public/appeals/{receipt}`` (the receipt is the only key
to it: 144 random bits, stored as a hash; pages send ``Referrer-Policy: no-referrer``).
Each page has a JSON twin (``?format=json`` or ``Accept: application/json``), as the other
public pages. The appellant's contact is never shown, nor the grounds (the receipt may be
shared; what was written need not be).

Limits: the public pages' rate limit and concurrency (``web.guard``, which also limits
filings per address), and a body of at most ``MAX_FORM`` bytes (413).

Cross-site posts are refused (403) when the browser says where the form came from: an
``Origin`` other than this site's own (or the configured public URL's), or
``Sec-Fetch-Site`` other than ``same-origin``/``none``. There is no session, so there is
nothing for a forged request to act as; but without the check any page on the web could
make its visitors' browsers file appeals from their addresses (past the per-address limit,
in bulk, in others' names). Clients that send neither header (curl, scripts) are served:
they file as themselves.

Examples::

    curl "http://127.0.0.1:8470/public/appeals/new?measure=3"
    curl -d measure_id=3 -d appellant=user -d grounds="My site is slowed" \\
         -d contact=me@example.org "http://127.0.0.1:8470/public/appeals?format=json"
    curl "http://127.0.0.1:8470/public/appeals/RECEIPT?format=json"
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown import appeals
from takedown.errors import Forbidden, InputError, NotFound, TakedownError
from takedown.transparency import PublicSettings
from takedown.web import models
from takedown.web.contract import (
    PUBLIC_ERRORS,
    RECEIPT_PATTERN,
    ROW_ID_QUERY,
    body_doc,
    errors_doc,
    page_doc,
)
from takedown.web.deps import bounded_body
from takedown.web.public import FORMAT, Format, page, wants_json
from takedown.web.templating import HEADERS

# a page holding a receipt is kept by no cache (the receipt opens the status page)
PRIVATE = {"Cache-Control": "no-store"}
# 5000 characters of grounds may be 20 KB of UTF-8 and three times that percent-encoded
MAX_FORM = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
FIELDS = ("measure_id", "item_id", "appellant", "grounds", "contact")
APPELLANT_LABELS = (
    ("platform", "the platform concerned"),
    ("author", "the author of the content"),
    ("user", "a user of the platform"),
    ("other", "someone else affected"),
)  # the pages say them in the reader's language (web.wording)
# error page titles: messages, said in the reader's language by templates/public/error.html
N_ = str
NOTHING_TO_CONTEST = N_("Nothing to contest here")
NOT_FILED = N_("Not filed")
NO_SUCH_APPEAL = N_("No such appeal")


def status_path(receipt: str) -> str:
    return f"/public/appeals/{receipt}"


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: Request, public_url: str | None) -> str | None:
    """Why a POST is refused as coming from another site (None: it is not)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin == "null" and fetch_site is not None:
        # Our pages send Referrer-Policy: no-referrer, under which a browser posts its own
        # form with "Origin: null"; Sec-Fetch-Site (checked above) then tells where from.
        return None
    ours = {_origin(str(request.base_url))}
    if public_url:
        ours.add(_origin(public_url))
    if origin.lower().rstrip("/") not in ours:
        return f"Origin {origin[:200]} is not this site"
    return None


def _form(raw: bytes) -> dict[str, str]:
    """The fields of an urlencoded body (the first of each; unknown ones ignored)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the form is not UTF-8", where="body") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=20, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed form: {exc}", where="body") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in FIELDS:
            out.setdefault(key, value)
    return out


def make_router(settings: PublicSettings | None = None) -> APIRouter:
    """The ``/public/appeals`` router."""
    settings = settings or PublicSettings()
    router = APIRouter(
        prefix="/public/appeals", tags=["public"], responses=errors_doc(*PUBLIC_ERRORS, html=True)
    )

    def base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def error_page(request: Request, exc: TakedownError, title: str) -> HTMLResponse:
        return page(request, "error.html", exc.http_status, title=title, message=exc.message)

    def form_page(
        request: Request,
        subject: appeals.Subject,
        form: dict[str, str],
        error: TakedownError | None = None,
    ) -> HTMLResponse:
        return page(
            request,
            "appeal_form.html",
            error.http_status if error is not None else 200,
            subject={
                "kind": subject.kind,
                "id": subject.id,
                "label": subject.label,
                "describe": subject.describe,
                "url": f"/public/measures/{subject.id}" if subject.kind == "measure" else None,
                "platform": subject.platform,
                "action": subject.action,
                "rate_kbps": subject.rate_kbps,
            },
            form={k: form.get(k, "") for k in ("appellant", "grounds", "contact")},
            error=error,
            deadline_days=appeals.deadline_of(subject).days,
            max_grounds=appeals.MAX_GROUNDS,
            max_contact=appeals.MAX_CONTACT,
        )

    @router.get(
        "/new",
        response_model=None,
        responses={
            **page_doc(models.AppealForm, FORM_EXAMPLE),
            **errors_doc(404, 409, html=True),
        },
    )
    async def public_appeal_form(
        request: Request,
        measure: str | None = Query(
            None, pattern=ROW_ID_QUERY, description="the measure's id", examples=["3"]
        ),
        item: str | None = Query(None, pattern=ROW_ID_QUERY, description="or the item's id"),
        format: Format = FORMAT,
    ) -> Response:
        """The form to contest a measure (``?measure=ID``) or an item (``?item=ID``):
        exactly one of them (422 otherwise)."""
        as_json = wants_json(request, format)
        now = request.app.state.clock.now()
        try:
            subject = await run_in_threadpool(
                lambda: appeals.check_subject(
                    request.app.state.db,
                    measure_id=appeals.row_id(measure, "measure"),
                    item_id=appeals.row_id(item, "item"),
                    now=now,
                )
            )
        except TakedownError as exc:
            if as_json:
                raise
            return error_page(request, exc, NOTHING_TO_CONTEST)
        if as_json:
            doc = {
                "subject": subject.as_json(),
                "post_to": "/public/appeals",
                "content_type": FORM_TYPE,
                "fields": {
                    f"{subject.kind}_id": subject.id,
                    "appellant": [v for v, _ in APPELLANT_LABELS],
                    "grounds": f"required, at most {appeals.MAX_GROUNDS} characters",
                    "contact": f"optional, at most {appeals.MAX_CONTACT} characters, never public",
                },
                "decision_within_days": appeals.deadline_of(subject).days,
            }
            return JSONResponse(doc, headers=HEADERS)
        return form_page(request, subject, {})

    @router.post(
        "",
        status_code=201,
        response_model=None,
        responses={
            **page_doc(models.AppealFiled, FILED_EXAMPLE, status=201),
            **errors_doc(403, 404, 409, 413, 415, html=True),
        },
        openapi_extra=body_doc("AppealFiling", FORM_TYPE),
    )
    async def public_file_appeal(request: Request, format: Format = FORMAT) -> Response:
        """File an appeal from the form (urlencoded); answers with the receipt, once.
        Cross-site posts are refused (403, ``where``: ``Origin``)."""
        as_json = wants_json(request, format)
        why = cross_site(request, settings.public_url)
        if why is not None:
            exc: TakedownError = Forbidden(
                f"appeals are filed from this site's own form ({why})", where="Origin"
            )
            if as_json:
                raise exc
            return error_page(request, exc, NOT_FILED)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM_TYPE:
            raise UnsupportedForm(f"send the form as {FORM_TYPE}", where="Content-Type")
        form = _form(await bounded_body(request, MAX_FORM))
        now = request.app.state.clock.now()
        db = request.app.state.db
        try:
            record, receipt = await run_in_threadpool(
                lambda: appeals.file_appeal(
                    db,
                    measure_id=form.get("measure_id"),
                    item_id=form.get("item_id"),
                    appellant=form.get("appellant"),
                    grounds=form.get("grounds"),
                    contact=form.get("contact", ""),
                    now=now,
                )
            )
        except TakedownError as exc:
            if as_json:
                raise
            if isinstance(exc, InputError) and exc.where not in ("measure_id", "item_id"):
                try:  # show the form again, as filled in, with what to fix
                    subject = await run_in_threadpool(
                        lambda: appeals.check_subject(
                            db,
                            measure_id=form.get("measure_id"),
                            item_id=form.get("item_id"),
                            now=now,
                        )
                    )
                except TakedownError:
                    return error_page(request, exc, NOT_FILED)
                return form_page(request, subject, form, exc)
            return error_page(request, exc, NOT_FILED)
        url = f"{base(request)}{status_path(receipt)}"
        if as_json:
            doc = {"receipt": receipt, "status_url": url, "appeal": record.public_json()}
            return JSONResponse(
                jsonable_encoder(doc), status_code=201, headers={**HEADERS, **PRIVATE}
            )
        return page(
            request,
            "appeal_filed.html",
            201,
            PRIVATE,
            appeal=record.public_json(),
            receipt=receipt,
            status_url=url,
        )

    @router.get(
        "/{receipt}",
        response_model=None,
        responses={**page_doc(models.PublicAppeal, STATUS_EXAMPLE), **errors_doc(404, html=True)},
    )
    async def public_appeal_status(
        request: Request,
        receipt: str = Path(
            description="the receipt the filing answered with (anything else: 404)",
            json_schema_extra={"pattern": RECEIPT_PATTERN},
            examples=["Ka2je1ZXBCQADa9HgI-Y5wn6"],
        ),
        format: Format = FORMAT,
    ) -> Response:
        """An appeal's state, deadline and, once decided, its outcome and reasons."""
        as_json = wants_json(request, format)
        try:
            record = await run_in_threadpool(
                appeals.get_by_receipt, request.app.state.db, receipt[: appeals.MAX_RECEIPT + 1]
            )
        except NotFound as exc:
            if as_json:
                raise
            return error_page(request, exc, NO_SUCH_APPEAL)
        doc: dict[str, Any] = record.public_json()
        if as_json:
            return JSONResponse(jsonable_encoder(doc), headers={**HEADERS, **PRIVATE})
        return page(request, "appeal_status.html", 200, PRIVATE, appeal=doc)

    return router


class UnsupportedForm(InputError):
    http_status = 415


STATUS_EXAMPLE = {
    "id": 2,
    "subject": "measure 3",
    "measure_id": 3,
    "item_id": None,
    "appellant": "user",
    "filed_at": "2021-03-12T00:00:00+00:00",
    "due_at": "2021-04-11T00:00:00+00:00",
    "state": "open",
    "decided_at": None,
    "decided_by": None,
    "reasons": None,
}
FILED_EXAMPLE = {
    "receipt": "Ka2je1ZXBCQADa9HgI-Y5wn6",
    "status_url": "https://register.example/public/appeals/Ka2je1ZXBCQADa9HgI-Y5wn6",
    "appeal": STATUS_EXAMPLE,
}
FORM_EXAMPLE = {
    "subject": {"kind": "measure", "id": 3, "describe": "Twitter: throttle 128 kbit/s"},
    "post_to": "/public/appeals",
    "content_type": FORM_TYPE,
    "fields": {
        "measure_id": 3,
        "appellant": ["platform", "author", "user", "other"],
        "grounds": "required, at most 5000 characters",
        "contact": "optional, at most 500 characters, never public",
    },
    "decision_within_days": 30,
}
