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

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from takedown import ledger
from takedown.accounts import Actor, staff_for
from takedown.errors import InputError
from takedown.model import MeasureState
from takedown.store.db import Database
from takedown.web.deps import RowId, bearer_token, json_body

MEASURE_STATES = tuple(s.value for s in MeasureState)


# --- tokens (takedown.accounts) -------------------------------------------------------------


async def staff(request: Request) -> Actor:
    """The authenticated staff member (401 without a valid ``Authorization: Bearer``)."""
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


def _parse_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    from takedown.clock import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise InputError(f"not an ISO 8601 time: {text!r}", where="at") from None


def base_url(request: Request, public_url: str | None) -> str:
    """The configured public URL, else the one the request came in on."""
    return (public_url or str(request.base_url)).rstrip("/")


# --- routes ---------------------------------------------------------------------------------


def make_router(*, public_url: str | None = None) -> APIRouter:
    """The ``/api`` router; ``public_url`` goes into the directives' reference URLs."""
    router = APIRouter(prefix="/api", tags=["regulator"], dependencies=[Depends(staff)])

    @router.get("/status")
    async def status(
        request: Request,
        platform: str | None = Query(None, description="one platform (default: each)"),
        at: str | None = Query(None, description="as of this ISO 8601 time (default: now)"),
    ) -> Any:
        """Compliance figures per platform (the keys of ``takedown status --json``)."""
        when = _parse_at(at)
        now = request.app.state.clock.now()
        return await run_in_threadpool(status_doc, request.app.state.db, now, platform, when)

    @router.get("/measures")
    async def measures(
        request: Request,
        platform: str | None = Query(None),
        state: str | None = Query(None, description=f"one of {', '.join(MEASURE_STATES)}"),
    ) -> list[dict[str, Any]]:
        """Measures as of now, with their state now."""
        from takedown.policy.measures import list_measures

        if state is not None and state not in MEASURE_STATES:
            raise InputError(f"unknown state {state!r}", where="state")
        now = request.app.state.clock.now()
        records = await run_in_threadpool(
            list_measures, request.app.state.db, at=now, platform=platform
        )
        return [m.as_json() for m in records if state is None or m.state == state]

    @router.get("/measures/{measure_id}")
    async def measure(request: Request, measure_id: RowId) -> dict[str, Any]:
        """A measure and the chain to the facts and decisions behind it (``explain``)."""
        from takedown.policy.measures import explain

        explanation = await run_in_threadpool(explain, request.app.state.db, measure_id)
        return explanation.as_json()

    @router.post("/measures/{measure_id}/approve")
    async def approve(request: Request, measure_id: RowId) -> dict[str, Any]:
        """Approve a proposed measure as the token's account (four eyes:
        ``policy.measures.four_eyes``, as in the console and the CLI)."""
        from takedown.policy.measures import approve as do_approve

        who = await staff(request)
        now = request.app.state.clock.now()
        record = await run_in_threadpool(do_approve, request.app.state.db, measure_id, who, now)
        return record.as_json()

    @router.post("/measures/{measure_id}/reject")
    async def reject(request: Request, measure_id: RowId) -> dict[str, Any]:
        """Reject a proposed measure (JSON ``{"reason": "..."}``) as the token's account."""
        from takedown.policy.measures import reject as do_reject

        who = await staff(request)
        body = await json_body(request, limit=64 * 1024)
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str):
            raise InputError("a JSON object with a reason", where="reason")
        now = request.app.state.clock.now()
        record = await run_in_threadpool(
            do_reject, request.app.state.db, measure_id, who, reason, now
        )
        return record.as_json()

    @router.get("/items/{item_id}")
    async def item(request: Request, item_id: RowId) -> dict[str, Any]:
        """One register item with its legal basis, provenance and state."""
        return await run_in_threadpool(item_doc, request.app.state.db, item_id)

    @router.get("/directives")
    async def directives(request: Request) -> dict[str, Any]:
        """The directive set compiled at now (what a publication now would sign)."""
        now = request.app.state.clock.now()
        url = base_url(request, public_url)
        return await run_in_threadpool(directives_doc, request.app.state.db, now, url)

    return router
