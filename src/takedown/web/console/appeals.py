"""The console's appeals inbox and decide form, over the appeals service (``takedown.appeals``).

Kept apart from the other console routes: the appeals service is built alongside, and its
names are used here only — ``list_appeals(db, state=, overdue_at=)``,
``get_appeal(db, id)``, ``decide(db, id, outcome=, reasons=, actor=, now=)`` and, if it
has one, ``counts(db, now=)``. Without the service the pages say so (501).
The service's decide checks who may decide (``accounts.authorise(actor, "decide")`` and
that the decider neither listed the item nor proposed the measure).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from takedown.errors import InputError, TakedownError
from takedown.web.deps import RowId

OUTCOMES = ("upheld", "reversed")
STATES = ("open", "upheld", "reversed", "overdue")


class AppealsMissing(TakedownError):
    http_status = 501


def service() -> ModuleType:
    """The appeals service, imported when first needed."""
    try:
        import takedown.appeals as appeals
    except ImportError:
        raise AppealsMissing("appeals are not available in this build", where="appeals") from None
    return appeals


def plain(value: Any) -> Any:
    """An appeal (or a list or mapping of them) as JSON-able data, whatever its type."""
    if hasattr(value, "as_json"):
        return value.as_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def inbox(db: Any, now: Any, state: str | None) -> dict[str, Any]:
    appeals = service()
    if state and state not in STATES:
        raise InputError(f"unknown state {state!r}; known: {', '.join(STATES)}", where="state")
    if state == "overdue":
        rows = appeals.list_appeals(db, state="open", overdue_at=now)
    else:
        rows = appeals.list_appeals(db, state=state or None)
    counts = appeals.counts(db, now=now) if hasattr(appeals, "counts") else None
    return {"state": state, "appeals": plain(list(rows)), "counts": plain(counts)}


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
        data = await run_in_threadpool(
            inbox,
            request.app.state.db,
            request.app.state.clock.now(),
            request.query_params.get("state") or None,
        )
        return page(request, info, "console/appeals.html", data, states=STATES)

    @router.get("/appeals/{appeal_id}")
    async def appeal(request: Request, appeal_id: RowId) -> Response:
        info = await staff(request)
        authorise(info.actor, "read")
        found = await run_in_threadpool(
            lambda: plain(service().get_appeal(request.app.state.db, appeal_id))
        )
        data = {"appeal": found, "outcomes": OUTCOMES}
        return page(request, info, "console/appeal.html", data, may_decide=info.actor.may("decide"))

    @router.post("/appeals/{appeal_id}/decide")
    async def appeal_decide(request: Request, appeal_id: RowId) -> Response:
        info, form = await posted(request)
        outcome = form.get("outcome", "")
        if outcome not in OUTCOMES:
            raise InputError(f"outcome must be {' or '.join(OUTCOMES)}", where="outcome")
        reasons = form.get("reasons", "").strip()
        if not reasons:
            raise InputError("a decision needs its reasons", where="reasons")
        result = await run_in_threadpool(
            lambda: service().decide(
                request.app.state.db,
                appeal_id,
                outcome=outcome,
                reasons=reasons,
                actor=info.actor,
                now=request.app.state.clock.now(),
            )
        )
        return done(request, f"/appeals/{appeal_id}", "decided", plain(result))
