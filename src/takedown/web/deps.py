"""Request dependencies: the database, the clock, platform bearer-token auth, bounded bodies."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path, Request, Security
from starlette.concurrency import run_in_threadpool

from takedown.clock import Clock
from takedown.errors import AuthError, InputError, TakedownError
from takedown.platforms import platform_for_token
from takedown.store.db import Database
from takedown.web.contract import platform_bearer

MAX_BODY = 8 * 1024 * 1024

# A stored row's id as a path parameter. Ids are INTEGER columns (32-bit on PostgreSQL), so
# anything outside 1..2^31-1 is refused (422) before it reaches a query: it used to
# overflow there (HTTP 500).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a stored row's id", examples=[3])]


class PayloadTooLarge(TakedownError):
    http_status = 413


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer TOKEN`` (401 when there is none)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token", where="Authorization")
    return token.strip()


async def platform_id(request: Request, _scheme: object = Security(platform_bearer)) -> int:
    """The authenticated platform's id (401 without a valid ``Authorization: Bearer``).
    ``_scheme`` only puts the ``platformToken`` scheme into the OpenAPI document."""
    return await run_in_threadpool(platform_for_token, request.app.state.db, bearer_token(request))


async def json_body(request: Request, limit: int = MAX_BODY) -> Any:
    """The request's JSON body, refusing more than ``limit`` bytes (413) and bad JSON (400)."""
    raw = await bounded_body(request, limit)
    if not raw:
        raise InputError("empty body; expected JSON", where="body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedJSON(f"malformed JSON: {exc}", where="body") from None


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, refusing more than ``limit`` bytes (413) whether declared by
    ``Content-Length`` or sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("bad Content-Length", where="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", where="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", where="body")
        chunks.append(chunk)
    return b"".join(chunks)


class MalformedJSON(InputError):
    http_status = 400
