"""The console's appeals inbox and decide form, over the appeals service (``takedown.appeals``).

Who may decide (the ``decide`` permission, and neither the proposer of the measure nor the
lister of the item) is the service's ``decide`` check, whichever door the request came in by.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from takedown import appeals
from takedown.errors import InputError
from takedown.web.deps import RowId

STATES = (*(s.value for s in appeals.AppealState), "overdue")
PAGE = 50


def inbox(db: Any, now: Any, state: str | None, after: int) -> dict[str, Any]:
    """The inbox page's data: one page of appeals (oldest first) and the counts."""
    if state and state not in STATES:
        raise InputError(f"unknown state {state!r}; known: {', '.join(STATES)}", where="state")
    if state == "overdue":
        rows = appeals.list_appeals(db, state="open", overdue_at=now, after=after, limit=PAGE)
    else:
        rows = appeals.list_appeals(db, state=state or None, after=after, limit=PAGE)
    return {
        "state": state,
        "appeals": [a.as_json() | {"overdue": a.overdue(now)} for a in rows],
        "counts": appeals.counts(db, now),
        "next_after": rows[-1].id if len(rows) == PAGE else None,
    }


def add_routes(
    router: APIRouter,
    *,
    staff: Callable[[Request], Awaitable[Any]],
    posted: Callable[[Request], Awaitable[tuple[Any, dict[str, str]]]],
    page: Callable[..., Response],
    done: Callable[..., Response],
) -> None:
    """``GET /console/appeals``, ``GET /console/appeals/{id}``, ``POST …/{id}/decide``."""
    from takedown.accounts import authorise

    @router.get("/appeals")
    async def appeals_inbox(request: Request) -> Response:
        info = await staff(request)
        authorise(info.actor, "read")
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            raise InputError("after must be an appeal id", where="after")
        data = await run_in_threadpool(
            inbox,
            request.app.state.db,
            request.app.state.clock.now(),
            request.query_params.get("state") or None,
            int(after),
        )
        return page(request, info, "console/appeals.html", data, states=STATES)

    @router.get("/appeals/{appeal_id}")
    async def appeal(request: Request, appeal_id: RowId) -> Response:
        info = await staff(request)
        authorise(info.actor, "read")
        found = await run_in_threadpool(appeals.get_appeal, request.app.state.db, appeal_id)
        data = {"appeal": found.as_json(), "outcomes": appeals.OUTCOMES}
        return page(request, info, "console/appeal.html", data, may_decide=info.actor.may("decide"))

    @router.post("/appeals/{appeal_id}/decide")
    async def appeal_decide(request: Request, appeal_id: RowId) -> Response:
        info, form = await posted(request)
        result = await run_in_threadpool(
            lambda: appeals.decide(
                request.app.state.db,
                appeal_id,
                outcome=form.get("outcome", ""),
                reasons=form.get("reasons", ""),
                actor=info.actor,
                now=request.app.state.clock.now(),
            )
        )
        return done(request, f"/appeals/{appeal_id}", "decided", result.as_json())
