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
    curl -H "Authorization: Bearer $T" "http://127.0.0.1:8470/api/platform/hashes?since=0"
    curl -X POST -H "Authorization: Bearer $T" -d '{"matches":[{"item_id":42,
         "action":"removed","url":"https://x.example/p/9","key":"m-1"}]}' \\
         http://127.0.0.1:8470/api/platform/matches
    curl -X POST -H "Authorization: Bearer $T" \\
         -d '{"measure_id":3,"grounds":"the listed posts are gone","contact":"legal@x.example"}' \\
         http://127.0.0.1:8470/api/platform/appeals
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from takedown import appeals
from takedown.errors import InputError
from takedown.media import store as media
from takedown.notices import responses as svc
from takedown.web import models
from takedown.web.contract import (
    IDEMPOTENCY_KEY_DOC,
    RECEIPT_PATTERN,
    api_fields,
    body_doc,
    errors_doc,
    ok_doc,
)
from takedown.web.deps import MAX_ROW_ID, RowId, json_body, platform_id

MAX_BATCH = 5000
MAX_IDEMPOTENCY_KEY = 150

router = APIRouter(prefix="/api/platform", tags=["platform"])

# a route's own ids are named as in its URL
_NOTICE = {"notice": "notice_id"}

_NOTICE_EXAMPLE = {
    "id": 7,
    "kind": "initial",
    "issued_at": "2021-03-10T02:00:00+00:00",
    "deadline_at": "2021-03-11T02:00:00+00:00",
    "acknowledged_at": None,
    "items": [
        {
            "id": 42,
            "target": "https://twitter.com/someone/status/1",
            "category": "drugs",
            "state": "open",
        }
    ],
}
_RECORDED_EXAMPLE = {
    "id": 1,
    "item_id": 42,
    "action": "removed",
    "item_state": "claimed",
    "duplicate": False,
    "key": "r-1",
}
_APPEAL_EXAMPLE = {
    "id": 1,
    "subject": "measure 3",
    "measure_id": 3,
    "item_id": None,
    "appellant": "platform",
    "filed_at": "2021-03-12T00:00:00Z",
    "due_at": "2021-04-11T00:00:00Z",
    "state": "open",
    "decided_at": None,
    "decided_by": None,
    "reasons": None,
}
IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=MAX_IDEMPOTENCY_KEY,
    pattern=r"\S",
    description=IDEMPOTENCY_KEY_DOC,
    examples=["r-1"],
)


@router.get(
    "/notices",
    response_model=models.NoticePage,
    responses={
        **ok_doc({"notices": [_NOTICE_EXAMPLE], "next_after": None}),
        **errors_doc(401, 422),
    },
)
async def list_notices(
    request: Request,
    after: int = Query(
        0,
        ge=0,
        le=MAX_ROW_ID,
        description="cursor: the last notice id of the previous page",
        examples=[0],
    ),
    limit: int = Query(100, ge=1, le=500, examples=[100]),
    include_closed: bool = Query(
        False, description="also notices with no open item", examples=[False]
    ),
    pid: int = Depends(platform_id),
) -> Any:
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


@router.get(
    "/notices/{notice_id}",
    response_model=models.PlatformNotice,
    responses={**ok_doc(_NOTICE_EXAMPLE), **errors_doc(401, 404, 422)},
)
async def get_notice(request: Request, notice_id: RowId, pid: int = Depends(platform_id)) -> Any:
    """One of the platform's notices with its items and their states."""
    with api_fields(_NOTICE):
        return await run_in_threadpool(svc.platform_notice, request.app.state.db, pid, notice_id)


@router.post(
    "/notices/{notice_id}/ack",
    response_model=models.Acknowledged,
    responses={
        **ok_doc({"notice_id": 7, "acknowledged_at": "2021-03-10T02:05:00+00:00"}),
        **errors_doc(401, 404, 422),
    },
)
async def acknowledge_notice(
    request: Request, notice_id: RowId, pid: int = Depends(platform_id)
) -> Any:
    """Acknowledge receipt of a notice (idempotent)."""
    now = request.app.state.clock.now()
    with api_fields(_NOTICE):
        at = await run_in_threadpool(svc.acknowledge, request.app.state.db, pid, notice_id, now=now)
    return {"notice_id": notice_id, "acknowledged_at": at.isoformat()}


def _request_key(value: str | None) -> str | None:
    if value is not None and not (0 < len(value.strip()) <= MAX_IDEMPOTENCY_KEY):
        raise InputError(
            f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters",
            where="Idempotency-Key",
        )
    return value.strip() if value else None


@router.post(
    "/items/{item_id}/response",
    response_model=models.ResponseRecorded,
    responses={**ok_doc(_RECORDED_EXAMPLE), **errors_doc(400, 401, 404, 409, 413, 422)},
    openapi_extra=body_doc("ItemResponse"),
)
async def respond_for_item(
    request: Request,
    item_id: int = Path(
        ge=1, le=MAX_ROW_ID, description="one of the platform's items", examples=[42]
    ),
    idempotency_key: str | None = IdempotencyKey,
    pid: int = Depends(platform_id),
) -> Any:
    """Answer for one item: removed, restricted (withheld in the country), rejected (with
    reason and policy) or needs_info. Idempotent on ``Idempotency-Key`` or ``key``."""
    data = await json_body(request)
    if isinstance(data, dict):
        if data.get("item_id", item_id) != item_id:
            raise InputError("item_id in the body differs from the URL", where="item_id")
        data = {**data, "item_id": item_id}
    parsed = svc.parse_response(data, where="body", key=_request_key(idempotency_key))
    now = request.app.state.clock.now()
    out = await run_in_threadpool(
        svc.record_responses, request.app.state.db, pid, [parsed], now=now
    )
    return out[0].as_json()


@router.post(
    "/responses",
    response_model=models.ResponsesRecorded,
    responses={
        **ok_doc({"responses": [_RECORDED_EXAMPLE], "stored": 1}),
        **errors_doc(400, 401, 404, 409, 413, 422),
    },
    openapi_extra=body_doc("BatchResponses"),
)
async def respond_batch(
    request: Request,
    idempotency_key: str | None = IdempotencyKey,
    pid: int = Depends(platform_id),
) -> Any:
    """Answer for many items in one request (all or nothing). With ``Idempotency-Key: K``
    the n-th response's key is ``K#n`` unless it carries its own ``key``."""
    data = await json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise InputError('expected {"responses": [...]}', where="body")
    items = data["responses"]
    if len(items) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} responses per request", where="responses")
    base = _request_key(idempotency_key)
    parsed = [
        svc.parse_response(
            r, where=f"responses[{n}]", key=f"{base}#{n}" if base is not None else None
        )
        for n, r in enumerate(items)
    ]
    now = request.app.state.clock.now()
    out = await run_in_threadpool(svc.record_responses, request.app.state.db, pid, parsed, now=now)
    return {"responses": [o.as_json() for o in out], "stored": sum(not o.duplicate for o in out)}


# --- media hashes and re-uploads --------------------------------------------------------------

_HASH_EXAMPLE = {
    "id": 5,
    "signal_type": "pdq",
    "signal_value": "72069555782808fbd585849b05e87e1da7b5af52b0748c3e3bf88330fb1e751b",
    "quality": 100,
    "item_id": 42,
    "item_target": "https://pbs.twimg.com/media/x.jpg",
    "category": "suicide",
    "recorded_at": "2021-03-10T02:00:00+00:00",
}
_MATCH_EXAMPLE = {
    "id": 3,
    "item_id": 42,
    "url": "https://twitter.com/other/status/9",
    "found_by": "verify",
    "removed_at": "2021-03-12T00:00:00+00:00",
    "duplicate": False,
}


@router.get(
    "/hashes",
    response_model=models.HashPage,
    responses={
        **ok_doc({"hashes": [_HASH_EXAMPLE], "next_since": None}),
        **errors_doc(401, 422),
    },
)
async def list_hashes(
    request: Request,
    since: int = Query(
        0,
        ge=0,
        le=MAX_ROW_ID,
        description="cursor: the last hash id of the previous page",
        examples=[0],
    ),
    limit: int = Query(500, ge=1, le=5000, examples=[500]),
    pid: int = Depends(platform_id),
) -> Any:
    """PDQ hashes of the media of the platform's own listed items (delisted items' hashes
    leave the list), oldest first, paginated: to find re-uploads with ThreatExchange tools."""
    page, cursor = await run_in_threadpool(
        media.platform_hashes, request.app.state.db, pid, since=since, limit=limit
    )
    return {"hashes": page, "next_since": cursor}


@router.post(
    "/matches",
    response_model=models.MatchesRecorded,
    responses={
        **ok_doc({"matches": [_MATCH_EXAMPLE], "stored": 1}),
        **errors_doc(400, 401, 404, 409, 413, 422),
    },
    openapi_extra=body_doc("ReportedMatches"),
)
async def report_matches(request: Request, pid: int = Depends(platform_id)) -> Any:
    """Report re-uploads of the platform's listed items it acted on (all or nothing); each
    counts as a removed re-upload in the ledger. Another platform's item is 404."""
    data = await json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("matches"), list):
        raise InputError('expected {"matches": [...]}', where="body")
    if set(data) - {"matches"}:
        raise InputError(f"unknown fields {sorted(set(data) - {'matches'})}", where="body")
    items = data["matches"]
    if not 1 <= len(items) <= MAX_BATCH:
        raise InputError(f"1 to {MAX_BATCH} matches per request", where="matches")
    parsed = [media.parse_match(m, where=f"matches[{n}]") for n, m in enumerate(items)]
    now = request.app.state.clock.now()
    out = await run_in_threadpool(
        media.record_platform_matches, request.app.state.db, pid, parsed, now=now
    )
    return {"matches": out, "stored": sum(not o["duplicate"] for o in out)}


# --- appeals --------------------------------------------------------------------------------

MAX_APPEAL_BODY = 64 * 1024


def _json_id(data: dict[str, Any], name: str) -> Any:
    """A JSON body's id field: a whole number or null (the form's text ids are the form's)."""
    value = data.get(name)
    if isinstance(value, float) and value.is_integer():  # JSON has one kind of number
        return int(value)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputError("must be a whole number", where=name)
    return value


@router.post(
    "/appeals",
    status_code=201,
    response_model=models.AppealFiled,
    responses={
        **ok_doc(
            {
                "receipt": "Oech4W0jPu6qJoB3qrwafENx",
                "status_url": "https://register.example/public/appeals/Oech4W0jPu6qJoB3qrwafENx",
                "appeal": _APPEAL_EXAMPLE,
            },
            status=201,
        ),
        **errors_doc(400, 401, 404, 409, 413, 422),
    },
    openapi_extra=body_doc("PlatformAppeal"),
)
async def file_platform_appeal(request: Request, pid: int = Depends(platform_id)) -> Any:
    """Appeal a measure on this platform or one of its items; the answer carries the
    receipt (shown once) and the status URL. Another platform's measure or item is 404."""
    data = await json_body(request, MAX_APPEAL_BODY)
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", where="body")
    if data.get("appellant", "platform") != "platform":
        raise InputError("a platform appeals as appellant 'platform'", where="appellant")
    measure_id, item_id = _json_id(data, "measure_id"), _json_id(data, "item_id")
    now = request.app.state.clock.now()
    record, receipt = await run_in_threadpool(
        lambda: appeals.file_appeal(
            request.app.state.db,
            measure_id=measure_id,
            item_id=item_id,
            appellant="platform",
            grounds=data.get("grounds"),
            contact=data.get("contact") or "",
            now=now,
            platform_id=pid,
        )
    )
    url = f"{str(request.base_url).rstrip('/')}/public/appeals/{receipt}"
    return {"receipt": receipt, "status_url": url, "appeal": record.public_json()}


@router.get(
    "/appeals/{receipt}",
    response_model=models.PublicAppeal,
    responses={**ok_doc(_APPEAL_EXAMPLE), **errors_doc(401, 404, 422)},
)
async def get_platform_appeal(
    request: Request,
    receipt: str = Path(
        description="the receipt the filing answered with (anything else: 404)",
        json_schema_extra={"pattern": RECEIPT_PATTERN},
        examples=["Oech4W0jPu6qJoB3qrwafENx"],
    ),
    pid: int = Depends(platform_id),
) -> Any:
    """One of the platform's own appeals by its receipt (404 for any other)."""
    record = await run_in_threadpool(
        lambda: appeals.get_by_receipt(
            request.app.state.db, receipt[: appeals.MAX_RECEIPT + 1], platform_id=pid
        )
    )
    return record.public_json()
