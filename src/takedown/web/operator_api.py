"""Operators' enforcement points report here; staff read the fleet's status.

``POST /api/operators/reports`` takes a point's signed report (operator token as bearer,
``Takedown-Signature`` over the body; see ``takedown.fleet.reports``) and stores it, or
refuses it whole (401 bad token or signature, 403 another operator's report, 409 a
repeat, 422 a bad field). ``GET /api/operators/status`` is what ``takedown operators
status --json`` prints, for staff tokens.

Examples::

    takedown enforce … --report http://127.0.0.1:8470/api/operators/reports --token $T
    curl -H "Authorization: Bearer $STAFF" "http://127.0.0.1:8470/api/operators/status?max_lag=3"
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Security
from starlette.concurrency import run_in_threadpool

from takedown.fleet import reports as rep
from takedown.fleet import store
from takedown.web import models
from takedown.web.contract import body_doc, errors_doc, ok_doc, operator_bearer
from takedown.web.deps import bearer_token, bounded_body
from takedown.web.regulator_api import staff

_STORED = {
    "id": 7,
    "operator": "rostelecom",
    "point_id": "msk-1",
    "sent_at": "2021-03-12T10:00:00Z",
    "sequence": 12,
}
_POINT = {
    "operator": "rostelecom",
    "point_id": "msk-1",
    "sequence": 12,
    "lag": 0,
    "last_report_at": "2021-03-12T10:00:00Z",
    "last_report_age_seconds": 31.0,
    "fail_open": False,
    "fail_open_reason": None,
    "silent": False,
    "lagging": False,
    "throughput_bps": {"measure 3": 131072.0},
}
_STATUS = {
    "operator": "rostelecom",
    "flagged": False,
    "flags": [],
    "latest_sequence": 12,
    "points": 1,
    "sequence_min": 12,
    "lag_max": 0,
    "fail_open_points": [],
    "silent_points": [],
    "throughput_bps": {"measure 3": 131072.0},
    "point_status": [_POINT],
}


def make_router() -> APIRouter:
    """The ``/api/operators`` router."""
    router = APIRouter(prefix="/api/operators", responses=errors_doc(401, 422))

    @router.post(
        "/reports",
        tags=["operator"],
        status_code=201,
        response_model=models.ReportStored,
        responses={**ok_doc(_STORED, status=201), **errors_doc(400, 403, 409, 413)},
        openapi_extra=body_doc("PointReport"),
    )
    async def post_report(
        request: Request,
        signature: str | None = Header(
            None,
            alias=rep.SIGNATURE_HEADER,
            description="t=<unix seconds>,ed25519=<hex>: Ed25519 over `<t>.<raw body>` with "
            "the key derived from the operator's token; t within 300 s of the server's clock",
            examples=["t=1615543200,ed25519=" + "0" * 128],
        ),
        _scheme: object = Security(operator_bearer),
    ) -> Any:
        """Store an enforcement point's signed report (all checks pass, or nothing is
        stored)."""
        body = await bounded_body(request, rep.MAX_BODY)
        token = bearer_token(request)
        now = request.app.state.clock.now()
        row_id, report = await run_in_threadpool(
            store.receive_report, request.app.state.db, token, signature, body, now
        )
        return {
            "id": row_id,
            "operator": report.operator,
            "point_id": report.point_id,
            "sent_at": rep.format_time(report.sent_at),
            "sequence": report.sequence,
        }

    @router.get(
        "/status",
        tags=["regulator"],
        response_model=list[models.OperatorStatus],
        responses=ok_doc([_STATUS]),
        dependencies=[Depends(staff)],
    )
    async def get_operators_status(
        request: Request,
        max_lag: int = Query(
            3, ge=0, le=1_000_000, description="flag points more publications behind than this"
        ),
    ) -> Any:
        """Per operator and point: the sequence applied, lag behind the latest publication,
        last report age, fail-open and silent points (10 minutes), throughput per measure."""
        now = request.app.state.clock.now()
        result = await run_in_threadpool(store.status, request.app.state.db, now, max_lag=max_lag)
        return [o.as_json() for o in result]

    return router
