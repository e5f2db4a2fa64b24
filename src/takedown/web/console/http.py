"""The console's HTTP plumbing: refusals as pages or JSON, bounded forms, fields.

A refused console request answers with its status and the reason: a page for people, the
project's error body ``{"error", "where"}`` with ``?format=json``; an unauthenticated page
view is a 303 to the login form instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from takedown.errors import InputError, TakedownError
from takedown.web.console.sessions import SessionInfo
from takedown.web.templating import HEADERS, render

PREFIX = "/console"
MAX_FORM = 64 * 1024  # bytes: the console's forms are short

# What a redirect after a successful form says (fixed texts: nothing from the request is
# reflected into the page).
DONE = {
    "added": "Item added to the register.",
    "exists": "That target is already listed under that decision.",
    "delisted": "Item delisted.",
    "resent": "Notice queued for delivery again.",
    "proposed": "Measure proposed.",
    "approved": "Measure approved: it is in force and goes into the next feed publication.",
    "rejected": "Measure rejected.",
    "lifted": "Measure lifted.",
    "decided": "Appeal decided.",
}


class LoginRequired(TakedownError):
    http_status = 401


class CsrfRefused(TakedownError):
    http_status = 403


def wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    return request.headers.get("accept", "").startswith("application/json")


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def json_page(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = jsonable_encoder(data)
    return no_store(
        JSONResponse(body, status_code=status_code, headers={**HEADERS, **(headers or {})})
    )


def error_response(request: Request, exc: TakedownError) -> Response:
    """A refused request: JSON (the project's error body) or a page with the reason."""
    headers = {k: v for k, v in exc.http_headers if k.lower() != "www-authenticate"}
    if isinstance(exc, LoginRequired) and request.method == "GET" and not wants_json(request):
        return no_store(RedirectResponse(f"{PREFIX}/login", status_code=303))
    if wants_json(request):
        body = {"error": exc.message, "where": exc.where}
        return json_page(body, exc.http_status, headers)
    info: SessionInfo | None = getattr(request.state, "console", None)
    context = {
        "me": info.actor if info else None,
        "csrf": info.csrf if info else "",
        "status": exc.http_status,
        "message": exc.message,
        "where": exc.where,
        "done": None,
    }
    return no_store(
        render(request, "console/error.html", context, status_code=exc.http_status, headers=headers)
    )


class ConsoleRoute(APIRoute):
    """Routes whose refusals are console pages (or JSON), never the API's bare JSON."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except TakedownError as exc:
                return error_response(request, exc)

        return handle


def now_of(request: Request) -> Any:
    return request.app.state.clock.now()


def db_of(request: Request) -> Any:
    return request.app.state.db


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded (or multipart) form of a POST, refusing more than MAX_FORM bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM):
        raise InputError(f"a console form is at most {MAX_FORM} bytes", where="body")
    form = await request.form(max_files=0, max_fields=50)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def field_text(form: dict[str, str], name: str, *, required: bool = True) -> str | None:
    value = form.get(name, "").strip()
    if not value:
        if required:
            raise InputError(f"{name.replace('_', ' ')} is required", where=name)
        return None
    return value


def field_number(form: dict[str, str], name: str, *, required: bool = False) -> float | None:
    text = field_text(form, name, required=required)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name.replace('_', ' ')} must be a number", where=name) from None
    if not math.isfinite(value):
        raise InputError(f"{name.replace('_', ' ')} must be a number", where=name)
    return value


def done_text(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


def after_of(request: Request) -> int | None:
    text = request.query_params.get("after")
    if not text:
        return None
    if not text.isdigit() or len(text) > 10:
        raise InputError("after must be an id", where="after")
    return int(text)
