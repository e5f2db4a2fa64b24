"""The platform API: ``/api/platform/…`` with a bearer token per platform.

A platform only ever sees its own notices and items; anything else is 404, never 403,
so ids of other platforms' objects do not leak.

Examples::

    curl -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/platform/notices
    curl -X POST -H "Authorization: Bearer $T" http://127.0.0.1:8470/api/platform/notices/7/ack
    curl -X POST -H "Authorization: Bearer $T" -H "Idempotency-Key: r-1" \\
         -d '{"action":"removed"}' http://127.0.0.1:8470/api/platform/items/42/response
    curl -X POST -H "Authorization: Bearer $T" -H "Idempotency-Key: batch-9" \\
         -d '{"responses":[{"item_id":42,"action":"rejected","reason":"satire",
              "policy":"ToS 4.2"}]}' http://127.0.0.1:8470/api/platform/responses
    curl -X POST -H "Authorization: Bearer $T" \\
         -d '{"measure_id":3,"grounds":"the listed posts are gone","contact":"legal@x.example"}' \\
         http://127.0.0.1:8470/api/platform/appeals
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from takedown import appeals
from takedown.errors import InputError
from takedown.model import ResponseAction
from takedown.notices import responses as svc
from takedown.web.deps import RowId, json_body, platform_id

MAX_BATCH = 5000

router = APIRouter(prefix="/api/platform", tags=["platform"])


class ResponseBody(BaseModel):
    """One response (for the OpenAPI schema; the body is validated field by field)."""

    item_id: int | None = Field(None, description="the item (omit on the per-item route)")
    action: ResponseAction
    reason: str | None = Field(None, description="required with action=rejected")
    policy: str | None = Field(None, description="the platform policy a rejection relies on")
    key: str | None = Field(None, description="client key; repeats are not stored twice")


class BatchBody(BaseModel):
    responses: list[ResponseBody]


_openapi_one = {
    "requestBody": {
        "content": {"application/json": {"schema": ResponseBody.model_json_schema()}},
        "required": True,
    }
}
_openapi_batch = {
    "requestBody": {
        "content": {"application/json": {"schema": BatchBody.model_json_schema()}},
        "required": True,
    }
}


@router.get("/notices")
async def list_notices(
    request: Request,
    after: int = Query(0, ge=0, description="cursor: the last notice id of the previous page"),
    limit: int = Query(100, ge=1, le=500),
    include_closed: bool = Query(False, description="also notices with no open item"),
    pid: int = Depends(platform_id),
) -> dict[str, Any]:
    """The platform's open notices (some item still open), oldest first, paginated."""
    page, cursor = await run_in_threadpool(
        svc.platform_notices,
        request.app.state.db,
        pid,
        after=after,
        limit=limit,
        include_closed=include_closed,
    )
    return {"notices": page, "next_after": cursor}


@router.get("/notices/{notice_id}")
async def get_notice(request: Request, notice_id: RowId, pid: int = Depends(platform_id)) -> Any:
    """One of the platform's notices with its items and their states."""
    return await run_in_threadpool(svc.platform_notice, request.app.state.db, pid, notice_id)


@router.post("/notices/{notice_id}/ack")
async def ack_notice(request: Request, notice_id: RowId, pid: int = Depends(platform_id)) -> Any:
    """Acknowledge receipt of a notice (idempotent)."""
    now = request.app.state.clock.now()
    at = await run_in_threadpool(svc.acknowledge, request.app.state.db, pid, notice_id, now=now)
    return {"notice_id": notice_id, "acknowledged_at": at.isoformat()}


def _request_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key.strip()) <= 150):
        raise InputError("Idempotency-Key must be 1..150 characters", where="Idempotency-Key")
    return key.strip() if key else None


@router.post("/items/{item_id}/response", openapi_extra=_openapi_one)
async def respond_item(request: Request, item_id: RowId, pid: int = Depends(platform_id)) -> Any:
    """Answer for one item: removed, restricted (withheld in the country), rejected (with
    reason and policy) or needs_info. Idempotent on ``Idempotency-Key`` or ``key``."""
    data = await json_body(request)
    if isinstance(data, dict):
        if data.get("item_id", item_id) != item_id:
            raise InputError("item_id in the body differs from the URL", where="item_id")
        data = {**data, "item_id": item_id}
    parsed = svc.parse_response(data, where="body", key=_request_key(request))
    now = request.app.state.clock.now()
    out = await run_in_threadpool(
        svc.record_responses, request.app.state.db, pid, [parsed], now=now
    )
    return out[0].as_json()


@router.post("/responses", openapi_extra=_openapi_batch)
async def respond_batch(request: Request, pid: int = Depends(platform_id)) -> Any:
    """Answer for many items in one request (all or nothing). With ``Idempotency-Key: K``
    the n-th response's key is ``K#n`` unless it carries its own ``key``."""
    data = await json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise InputError('expected {"responses": [...]}', where="body")
    items = data["responses"]
    if len(items) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} responses per request", where="responses")
    base = _request_key(request)
    parsed = [
        svc.parse_response(
            r, where=f"responses[{n}]", key=f"{base}#{n}" if base is not None else None
        )
        for n, r in enumerate(items)
    ]
    now = request.app.state.clock.now()
    out = await run_in_threadpool(svc.record_responses, request.app.state.db, pid, parsed, now=now)
    return {"responses": [o.as_json() for o in out], "stored": sum(not o.duplicate for o in out)}


# --- appeals --------------------------------------------------------------------------------

MAX_APPEAL_BODY = 64 * 1024


class AppealBody(BaseModel):
    """An appeal by the platform (for the OpenAPI schema; checked field by field)."""

    measure_id: int | None = Field(None, description="a measure on this platform")
    item_id: int | None = Field(None, description="or one of this platform's items")
    grounds: str = Field(..., description="why it is wrong, at most 5000 characters")
    contact: str | None = Field(None, description="whom the regulator may reach; never public")


_openapi_appeal = {
    "requestBody": {
        "content": {"application/json": {"schema": AppealBody.model_json_schema()}},
        "required": True,
    }
}


@router.post("/appeals", status_code=201, openapi_extra=_openapi_appeal)
async def file_appeal(request: Request, pid: int = Depends(platform_id)) -> Any:
    """Appeal a measure on this platform or one of its items; the answer carries the
    receipt (shown once) and the status URL. Another platform's measure or item is 404."""
    data = await json_body(request, MAX_APPEAL_BODY)
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", where="body")
    if data.get("appellant", "platform") != "platform":
        raise InputError("a platform appeals as appellant 'platform'", where="appellant")
    now = request.app.state.clock.now()
    record, receipt = await run_in_threadpool(
        lambda: appeals.file_appeal(
            request.app.state.db,
            measure_id=data.get("measure_id"),
            item_id=data.get("item_id"),
            appellant="platform",
            grounds=data.get("grounds"),
            contact=data.get("contact") or "",
            now=now,
            platform_id=pid,
        )
    )
    url = f"{str(request.base_url).rstrip('/')}/public/appeals/{receipt}"
    return {"receipt": receipt, "status_url": url, "appeal": record.public_json()}


@router.get("/appeals/{receipt}")
async def get_appeal(request: Request, receipt: str, pid: int = Depends(platform_id)) -> Any:
    """One of the platform's own appeals by its receipt (404 for any other)."""
    record = await run_in_threadpool(
        lambda: appeals.get_by_receipt(
            request.app.state.db, receipt[: appeals.MAX_RECEIPT + 1], platform_id=pid
        )
    )
    return record.public_json()
