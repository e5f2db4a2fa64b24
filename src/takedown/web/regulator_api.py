"""The regulator API: ``/api/…`` for regulator staff, with their own bearer tokens: reads,
and approving or rejecting a proposed measure (the same four-eyes check as the console and
the CLI).

Staff tokens (issued by ``takedown.accounts``) live in ``api_tokens`` (SHA-256 hex, like
platform tokens) and are a different table from platform tokens: a platform token is
refused here (401) and a staff token is refused on ``/api/platform/…`` (401).

Examples::

    takedown api-token issue alice --role analyst          # prints the token once
    curl -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/status?platform=twitter
    curl -H "Authorization: Bearer $T" "http://127.0.0.1:8470/api/status?at=2021-05-17T00:00:00Z"
    curl -H "Authorization: Bearer $T" "http://127.0.0.1:8470/api/measures?state=active"
    curl -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/measures/3
    curl -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/items/42
    curl -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/directives
    curl -X POST -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/measures/3/approve
    curl -X POST -H "Authorization: Bearer $T" -d '{"reason": "figures stale"}' \
        http://127.0.0.1:8470/api/measures/3/reject
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Security
from starlette.concurrency import run_in_threadpool

from takedown import ledger
from takedown.accounts import Actor, staff_for
from takedown.errors import InputError, NotFound
from takedown.model import MeasureState
from takedown.platforms import SLUG
from takedown.store.db import Database
from takedown.web import models
from takedown.web.contract import (
    LEGAL_BASIS_EXAMPLE,
    api_fields,
    body_doc,
    errors_doc,
    ok_doc,
    staff_bearer,
)
from takedown.web.deps import RowId, bearer_token, json_body

# --- tokens (takedown.accounts) -------------------------------------------------------------


async def staff(request: Request, _scheme: object = Security(staff_bearer)) -> Actor:
    """The authenticated staff member (401 without a valid ``Authorization: Bearer``).
    ``_scheme`` only puts the ``staffToken`` scheme into the OpenAPI document."""
    return await run_in_threadpool(staff_for, request.app.state.db, bearer_token(request))


# --- documents ------------------------------------------------------------------------------


def status_doc(
    db: Database, now: datetime, platform: str | None, at: datetime | None
) -> dict[str, Any] | list[dict[str, Any]]:
    """What ``takedown status --json [--platform P] [--at T]`` prints."""
    return ledger.status(db, now, platform=platform, at=at).as_json()


def item_doc(db: Database, item_id: int) -> dict[str, Any]:
    from takedown.registry.formats._base import entry_fields
    from takedown.registry.service import get_item

    entry, item = get_item(db, item_id)
    data = entry_fields(entry)
    data.update(
        deadline_at=item.deadline_at.isoformat() if item.deadline_at else None,
        verified_at=item.verified_at.isoformat() if item.verified_at else None,
        delist_decision=item.delist_decision,
    )
    return data


def directives_doc(db: Database, now: datetime, public_url: str) -> dict[str, Any]:
    from takedown.feed.compile import directives_in_force
    from takedown.feed.directives import to_dict

    compiled = directives_in_force(db, now, public_url=public_url)
    doc = to_dict(compiled.directives)
    doc["refused"] = list(compiled.refused)
    return doc


# RFC 3339: a date-time with its offset, or a date (midnight UTC)
AT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt]([0-9]{2}:[0-9]{2}):([0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)


def _parse_at(text: str | None) -> datetime | None:
    """``?at=``, an RFC 3339 date-time or date, empty for now (a leap second is taken as
    :59, a fraction to the microsecond, an instant beyond the calendar's ends as its end)."""
    if text is None or text == "":
        return None
    match = AT.fullmatch(text)
    if match is None:
        raise InputError(f"not an RFC 3339 date-time: {text[:80]!r}", where="at")
    day, hm, sec, frac, offset = match.groups()
    try:
        if hm is None:
            return datetime.fromisoformat(day).replace(tzinfo=UTC)
        sec = min(sec, "59")
        frac = f".{frac[:6]}" if frac else ""
        offset = "+00:00" if offset in ("Z", "z") else offset
        when = datetime.fromisoformat(f"{day}T{hm}:{sec}{frac}{offset}")
    except ValueError:
        raise InputError(f"not an RFC 3339 date-time: {text[:80]!r}", where="at") from None
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        return (
            datetime.min.replace(tzinfo=UTC) if when.year == 1 else datetime.max.replace(tzinfo=UTC)
        )


def base_url(request: Request, public_url: str | None) -> str:
    """The configured public URL, else the one the request came in on."""
    return (public_url or str(request.base_url)).rstrip("/")


# --- routes ---------------------------------------------------------------------------------

# library errors name the CLI's flags and arguments; here they are the request's
_FIELDS = {"--platform": "platform", "ID": "measure_id"}
PLATFORM = Query(None, description="one platform's slug", examples=["twitter"])


def _platform(slug: str | None) -> str | None:
    """``slug``, refused at once (404, as any unknown platform) when it cannot be one."""
    if slug is not None and not SLUG.match(slug):
        raise NotFound(f"unknown platform {slug[:80]!r}", where="platform")
    return slug


_FIGURES = {
    "platform": "twitter",
    "as_of": "2021-05-17T00:00:00+00:00",
    "flagged": 620,
    "removed": 555,
    "restricted": 0,
    "claimed": 9,
    "remaining": 65,
    "overdue": 56,
    "removed_share": 0.895,
    "on_time_share": 0.41,
    "ttr_median_h": 3.0,
    "ttr_p90_h": 1450.5,
}
_MEASURE = {
    "id": 3,
    "platform": "twitter",
    "action": "throttle",
    "rate_kbps": 128,
    "classes": [],
    "scope": {"fixed": 100.0, "mobile": 100.0},
    "state": "active",
    "proposed_at": "2021-03-10T00:00:00Z",
    "starts_at": "2021-03-10T00:00:00Z",
    "review_at": None,
    "expires_at": None,
    "lifted_at": None,
    "rule": "slowdown",
    "ladder": "ru-2021",
    "reason": "overdue items",
    "decision_ref": None,
    "lift_decision": None,
    "needs_approval": False,
    "created_by": "ladder-bot",
    "supersedes_id": None,
}
_EXPLAINED = {
    **_MEASURE,
    "figures": {"fired": "overdue >= 50", "read": {"overdue": 56}},
    "legal_basis": LEGAL_BASIS_EXAMPLE,
    "obligations": [],
    "approvals": [],
    "supersedes": [],
    "superseded_by": None,
    "events": [
        {
            "seq": 15,
            "at": "2021-03-10T00:00:00Z",
            "actor": "ladder-bot",
            "type": "measure.active",
            "payload": {"measure_id": 3, "action": "throttle"},
        }
    ],
}
_ITEM = {
    "id": 42,
    "target": "https://twitter.com/someone/status/1",
    "kind": "url",
    "category": "drugs",
    "basis": "149-FZ art. 15.1",
    "decision": "RKN-1",
    "authority": "Roskomnadzor",
    "decision_date": "2021-03-01",
    "platform": "twitter",
    "listed_at": "2021-03-10T00:00:00+00:00",
    "delisted_at": None,
    "state": "open",
    "source": None,
    "flags": [],
    "deadline_at": "2021-03-11T02:00:00+00:00",
    "verified_at": None,
    "delist_decision": None,
}
_DIRECTIVES = {
    "schema_version": 1,
    "sequence": 1,
    "generated_at": "2021-03-12T00:00:00Z",
    "directives": [
        {
            "id": "m3",
            "action": "throttle",
            "hosts": [{"pattern": "twitter.com", "content_class": "text"}],
            "ip_ranges": [],
            "rate_kbps": 128,
            "scope": {"fixed": 100.0, "mobile": 100.0},
            "valid_from": "2021-03-10T00:00:00Z",
            "expires": "2021-03-19T00:00:00Z",
            "measure_id": 3,
            "decisions": ["RKN-1"],
            "reference_url": "https://register.example/public/measures/3",
        }
    ],
    "refused": [],
}


def make_router(*, public_url: str | None = None) -> APIRouter:
    """The ``/api`` router; ``public_url`` goes into the directives' reference URLs."""
    router = APIRouter(
        prefix="/api",
        tags=["regulator"],
        dependencies=[Depends(staff)],
        responses=errors_doc(401, 422),
    )

    @router.get(
        "/status",
        response_model=models.Figures | list[models.Figures],
        response_model_exclude_unset=True,  # "category" only when split by it
        responses={**ok_doc([_FIGURES]), **errors_doc(404)},
    )
    async def get_status(
        request: Request,
        platform: str | None = PLATFORM,
        at: str | None = Query(
            None,
            description="as of this RFC 3339 date-time, or date (midnight UTC); default: now",
            json_schema_extra={
                "anyOf": [{"format": "date-time"}, {"format": "date"}, {"const": ""}]
            },
            examples=["2021-05-17T00:00:00Z"],
        ),
    ) -> Any:
        """Compliance figures per platform (the keys of ``takedown status --json``); one
        object for one ``platform``, else a list."""
        when = _parse_at(at)
        now = request.app.state.clock.now()
        slug = _platform(platform)
        with api_fields(_FIELDS):
            return await run_in_threadpool(status_doc, request.app.state.db, now, slug, when)

    @router.get(
        "/measures",
        response_model=list[models.Measure],
        responses={**ok_doc([_MEASURE]), **errors_doc(404)},
    )
    async def list_measures(
        request: Request,
        platform: str | None = PLATFORM,
        state: MeasureState | None = Query(None, examples=["active"]),
    ) -> Any:
        """Measures as of now, with their state now."""
        from takedown.policy.measures import list_measures

        now = request.app.state.clock.now()
        with api_fields(_FIELDS):
            records = await run_in_threadpool(
                list_measures, request.app.state.db, at=now, platform=_platform(platform)
            )
        return [m.as_json() for m in records if state is None or m.state == state]

    @router.get(
        "/measures/{measure_id}",
        response_model=models.MeasureExplained,
        responses={**ok_doc(_EXPLAINED), **errors_doc(404)},
    )
    async def get_measure(request: Request, measure_id: RowId) -> Any:
        """A measure and the chain to the facts and decisions behind it (``explain``)."""
        from takedown.policy.measures import explain

        with api_fields(_FIELDS):
            explanation = await run_in_threadpool(explain, request.app.state.db, measure_id)
        return explanation.as_json()

    @router.post(
        "/measures/{measure_id}/approve",
        response_model=models.Measure,
        responses={**ok_doc(_MEASURE), **errors_doc(403, 404, 409)},
    )
    async def approve_measure(
        request: Request, measure_id: RowId, who: Actor = Depends(staff)
    ) -> Any:
        """Approve a proposed measure as the token's account (four eyes:
        ``policy.measures.four_eyes``, as in the console and the CLI)."""
        from takedown.policy.measures import approve as do_approve

        now = request.app.state.clock.now()
        with api_fields(_FIELDS):
            return (
                await run_in_threadpool(do_approve, request.app.state.db, measure_id, who, now)
            ).as_json()

    @router.post(
        "/measures/{measure_id}/reject",
        response_model=models.Measure,
        responses={
            **ok_doc({**_MEASURE, "state": "lifted", "lift_decision": "rejected: figures stale"}),
            **errors_doc(400, 403, 404, 409, 413),
        },
        openapi_extra=body_doc("Rejection"),
    )
    async def reject_measure(
        request: Request, measure_id: RowId, who: Actor = Depends(staff)
    ) -> Any:
        """Reject a proposed measure (JSON ``{"reason": "..."}``) as the token's account."""
        from takedown.policy.measures import reject as do_reject

        body = await json_body(request, limit=64 * 1024)
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str):
            raise InputError("a JSON object with a reason", where="reason")
        if "\x00" in reason:
            raise InputError("the reason holds a NUL character", where="reason")
        now = request.app.state.clock.now()
        with api_fields(_FIELDS):
            record = await run_in_threadpool(
                do_reject, request.app.state.db, measure_id, who, reason, now
            )
        return record.as_json()

    @router.get(
        "/items/{item_id}",
        response_model=models.RegisterItem,
        responses={**ok_doc(_ITEM), **errors_doc(404)},
    )
    async def get_item(request: Request, item_id: RowId) -> Any:
        """One register item with its legal basis, provenance and state."""
        with api_fields({None: "item_id"}):
            return await run_in_threadpool(item_doc, request.app.state.db, item_id)

    @router.get("/directives", response_model=models.DirectiveSet, responses=ok_doc(_DIRECTIVES))
    async def get_directives(request: Request) -> Any:
        """The directive set compiled at now (what a publication now would sign)."""
        now = request.app.state.clock.now()
        url = base_url(request, public_url)
        return await run_in_threadpool(directives_doc, request.app.state.db, now, url)

    return router
