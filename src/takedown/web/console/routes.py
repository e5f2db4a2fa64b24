"""The staff console at ``/console``: server-rendered pages and plain HTML forms.

Every page is HTML, or its data as JSON with ``?format=json`` (the session cookie still
needed). Every form works without script; every POST carries the session's CSRF token
(403 without it). Unauthenticated: a page redirects (303) to ``/console/login``; JSON and
POSTs get 401. What an actor may do is ``accounts.authorise`` (read for pages, write for
add, delist, propose, lift, resend); approving and rejecting go through
``policy.measures.approve``/``reject``, whose ``four_eyes`` is the one four-eyes check.
A refused action answers with its status (403, 409, 422) and the reason, on a page.

Pages: ``/console/`` (dashboard), ``/console/register`` (search; ``/new`` to add),
``/console/items/{id}`` (history; delist), ``/console/notices`` (resend),
``/console/measures`` (queue; ``/new`` to propose), ``/console/measures/{id}`` (approve,
reject, lift), ``/console/appeals`` (``console.appeals``).

Example::

    curl -b takedown_session=… "http://127.0.0.1:8470/console/register?category=drugs&format=json"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown.accounts import Actor, authorise, verify_login
from takedown.errors import AuthError, InputError
from takedown.web.console import pages
from takedown.web.console.http import (
    PREFIX,
    ConsoleRoute,
    CsrfRefused,
    LoginRequired,
    after_of,
    db_of,
    done_text,
    field_number,
    field_text,
    json_page,
    no_store,
    now_of,
    read_form,
    wants_json,
)
from takedown.web.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleSettings,
    LoginLimiter,
    SessionInfo,
    cookie_flags,
    csrf_matches,
    end_session,
    lookup,
    name_key,
    new_token,
    open_session,
)
from takedown.web.deps import RowId
from takedown.web.guard import client_key
from takedown.web.templating import render


@dataclass
class Console:
    """The console's state: its settings, the login limiter, the chart cache."""

    settings: ConsoleSettings
    public_url: str | None = None
    limiter: LoginLimiter = field(init=False)
    charts: pages.ChartCache = field(default_factory=pages.ChartCache)

    def __post_init__(self) -> None:
        s = self.settings
        self.limiter = LoginLimiter(s.failures, s.window, s.max_clients)

    def secure(self, request: Request) -> bool:
        if self.settings.secure is not None:
            return self.settings.secure
        return request.url.scheme == "https" or (self.public_url or "").startswith("https:")

    def base_url(self, request: Request) -> str:
        return (self.public_url or str(request.base_url)).rstrip("/")


async def session_of(request: Request, console: Console) -> SessionInfo | None:
    info = await run_in_threadpool(
        lookup,
        db_of(request),
        request.cookies.get(SESSION_COOKIE),
        now=now_of(request),
        settings=console.settings,
    )
    request.state.console = info
    return info


def make_router(
    settings: ConsoleSettings | None = None, *, public_url: str | None = None
) -> APIRouter:
    """The ``/console`` router (HTML; left out of the OpenAPI document)."""
    console = Console(settings or ConsoleSettings(), public_url)
    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)

    async def staff(request: Request) -> SessionInfo:
        info = await session_of(request, console)
        if info is None:
            raise LoginRequired("log in first", where="session")
        return info

    async def posted(request: Request) -> tuple[SessionInfo, dict[str, str]]:
        """The session and the form of a POST, its CSRF token checked (403 without it)."""
        info = await staff(request)
        form = await read_form(request)
        presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not csrf_matches(info.csrf, presented):
            raise CsrfRefused("missing or wrong CSRF token; reload the form", where=CSRF_FIELD)
        return info, form

    def page(
        request: Request, info: SessionInfo, template: str, data: dict[str, Any], **extra: Any
    ) -> Response:
        if wants_json(request):
            return json_page(data)
        context = {
            "me": info.actor,
            "csrf": info.csrf,
            "done": done_text(request),
            "data": data,
            **extra,
        }
        return no_store(render(request, template, context))

    def done(request: Request, path: str, what: str, result: Any = None) -> Response:
        if wants_json(request):
            return json_page({"done": what, "result": result})
        return no_store(RedirectResponse(f"{PREFIX}{path}?done={what}", status_code=303))

    def reading(info: SessionInfo) -> Actor:
        authorise(info.actor, "read")
        return info.actor

    def writing(info: SessionInfo) -> Actor:
        authorise(info.actor, "write")
        return info.actor

    # --- login ------------------------------------------------------------------------------

    def login_page(
        request: Request, token: str, error: str | None, status: int = 200, **headers: str
    ) -> Response:
        response = render(
            request,
            "console/login.html",
            {"me": None, "csrf": token, "error": error, "done": None},
            status_code=status,
            headers=headers or None,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, **cookie_flags(secure=console.secure(request))
        )
        return no_store(response)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        if await session_of(request, console) is not None:
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
        if len(token) < 32 or len(token) > 100:
            token = new_token()
        return login_page(request, token, None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not csrf_matches(cookie, form.get(CSRF_FIELD)):
            raise CsrfRefused("missing or wrong CSRF token; reload the login form", where="csrf")
        username, password = form.get("username", ""), form.get("password", "")
        keys = ["addr:" + client_key(request.scope), name_key(username)]
        clock = console.settings.monotonic
        wait = console.limiter.wait(keys, clock())
        if wait > 0:
            seconds = str(max(1, math.ceil(wait)))
            message = f"too many failed logins; try again in {seconds} s"
            if wants_json(request):
                return json_page(
                    {"error": message, "where": "login"}, 429, {"Retry-After": seconds}
                )
            return login_page(
                request, cookie or new_token(), message, 429, **{"Retry-After": seconds}
            )
        db = db_of(request)

        def check() -> Actor:
            with db.reading() as session:
                return verify_login(session, username, password)

        try:
            actor = await run_in_threadpool(check)
        except AuthError as exc:
            console.limiter.fail(keys, clock())
            if wants_json(request):
                return json_page({"error": exc.message, "where": exc.where}, 401)
            return login_page(request, cookie or new_token(), exc.message, 401)
        console.limiter.forget(keys[1])
        opened = await run_in_threadpool(
            open_session,
            db,
            actor,
            now=now_of(request),
            settings=console.settings,
            replacing=request.cookies.get(SESSION_COOKIE),
            client=keys[0][5:],
        )
        response: Response
        if wants_json(request):
            response = json_page(
                {"name": actor.name, "roles": sorted(actor.roles), "csrf": opened.csrf}
            )
        else:
            response = no_store(RedirectResponse(f"{PREFIX}/", status_code=303))
        secure = console.secure(request)
        response.set_cookie(SESSION_COOKIE, opened.token, **cookie_flags(secure=secure))
        response.delete_cookie(
            LOGIN_CSRF_COOKIE, path="/console", secure=secure, httponly=True, samesite="strict"
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request)
        token = request.cookies.get(SESSION_COOKIE)
        await run_in_threadpool(end_session, db_of(request), token, now=now_of(request))
        response = no_store(RedirectResponse(f"{PREFIX}/login", status_code=303))
        secure = console.secure(request)
        response.delete_cookie(
            SESSION_COOKIE, path="/console", secure=secure, httponly=True, samesite="strict"
        )
        return response

    # --- dashboard --------------------------------------------------------------------------

    @router.get("")
    @router.get("/")
    async def dashboard(request: Request) -> Response:
        info = await staff(request)
        reading(info)
        data = await run_in_threadpool(pages.dashboard, db_of(request), now_of(request))
        return page(request, info, "console/dashboard.html", data)

    @router.get("/chart/{slug}.svg")
    async def chart(request: Request, slug: str) -> Response:
        info = await staff(request)
        reading(info)
        svg = await run_in_threadpool(console.charts.svg, db_of(request), slug, now_of(request))
        headers = {
            # an image document: matplotlib's SVG carries its own <style>; nothing runs
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=300",
        }
        return Response(svg, media_type="image/svg+xml", headers=headers)

    # --- register ---------------------------------------------------------------------------

    @router.get("/register")
    async def register(request: Request) -> Response:
        info = await staff(request)
        reading(info)
        p = request.query_params
        query = pages.ItemQuery(
            target=p.get("target") or None,
            decision=p.get("decision") or None,
            category=p.get("category") or None,
            platform=p.get("platform") or None,
            state=p.get("state") or None,
            after=after_of(request),
        )
        db = db_of(request)
        data = await run_in_threadpool(pages.search_items, db, query, now_of(request))
        slugs = await run_in_threadpool(pages.platform_slugs, db)
        return page(
            request, info, "console/register.html", data, platforms=slugs, states=pages.ITEM_STATES
        )

    @router.get("/register/new")
    async def register_new(request: Request) -> Response:
        info = await staff(request)
        writing(info)
        slugs = await run_in_threadpool(pages.platform_slugs, db_of(request))
        return page(request, info, "console/item_new.html", {"platforms": slugs})

    @router.post("/register")
    async def register_add(request: Request) -> Response:
        from takedown.model import Decision, ItemRecord
        from takedown.registry.service import add_item
        from takedown.registry.targets import parse_target_flags

        info, form = await posted(request)
        actor = writing(info)
        decision_date = field_text(form, "decision_date", required=False)
        if decision_date is not None:
            try:
                decision_date = date.fromisoformat(decision_date).isoformat()
            except ValueError:
                raise InputError("not a date (YYYY-MM-DD)", where="decision_date") from None
        parsed, flags = parse_target_flags(field_text(form, "target") or "", where="target")
        record = ItemRecord(
            target=parsed,
            flags=flags,
            category=field_text(form, "category") or "",
            basis=field_text(form, "basis") or "",
            decision=Decision(
                field_text(form, "decision") or "",
                field_text(form, "authority", required=False),
                decision_date,
            ),
            platform=field_text(form, "platform", required=False),
            source="console",
        )
        item_id, created = await run_in_threadpool(
            lambda: add_item(db_of(request), record, now=now_of(request), actor=actor.label)
        )
        return done(
            request,
            f"/items/{item_id}",
            "added" if created else "exists",
            {"id": item_id, "created": created},
        )

    @router.get("/items/{item_id}")
    async def item(request: Request, item_id: RowId) -> Response:
        info = await staff(request)
        reading(info)
        data = await run_in_threadpool(pages.item_page, db_of(request), item_id, now_of(request))
        return page(request, info, "console/item.html", data, may_write=info.actor.may("write"))

    @router.post("/items/{item_id}/delist")
    async def item_delist(request: Request, item_id: RowId) -> Response:
        from takedown.registry.service import delist

        info, form = await posted(request)
        actor = writing(info)
        decision = field_text(form, "decision") or ""
        reason = field_text(form, "reason") or ""
        await run_in_threadpool(
            lambda: delist(
                db_of(request),
                item_id,
                decision,
                now=now_of(request),
                actor=actor.label,
                reason=reason,
            )
        )
        return done(request, f"/items/{item_id}", "delisted", {"id": item_id})

    # --- notices ----------------------------------------------------------------------------

    @router.get("/notices")
    async def notices(request: Request) -> Response:
        info = await staff(request)
        reading(info)
        p = request.query_params
        db = db_of(request)
        data = await run_in_threadpool(
            lambda: pages.notices_page(
                db,
                now_of(request),
                platform=p.get("platform") or None,
                state=p.get("state") or None,
                after=after_of(request),
            )
        )
        slugs = await run_in_threadpool(pages.platform_slugs, db)
        return page(
            request,
            info,
            "console/notices.html",
            data,
            platforms=slugs,
            may_write=info.actor.may("write"),
        )

    @router.post("/notices/{notice_id}/resend")
    async def notice_resend(request: Request, notice_id: RowId) -> Response:
        from takedown.notices.delivery import requeue

        info, _form = await posted(request)
        actor = writing(info)
        await run_in_threadpool(
            lambda: requeue(db_of(request), notice_id, now=now_of(request), actor=actor.label)
        )
        return done(request, "/notices", "resent", {"id": notice_id})

    # --- operators --------------------------------------------------------------------------

    @router.get("/operators")
    async def operators(request: Request) -> Response:
        from takedown.fleet import store as fleet

        info = await staff(request)
        reading(info)
        result = await run_in_threadpool(fleet.status, db_of(request), now_of(request))
        data = {"operators": [o.as_json() for o in result]}
        return page(request, info, "console/operators.html", data)

    # --- measures ---------------------------------------------------------------------------

    @router.get("/measures")
    async def measures(request: Request) -> Response:
        info = await staff(request)
        reading(info)
        data = await run_in_threadpool(pages.measures_queue, db_of(request), now_of(request))
        return page(request, info, "console/measures.html", data, may_write=info.actor.may("write"))

    @router.get("/measures/new")
    async def measure_new(request: Request) -> Response:
        info = await staff(request)
        writing(info)
        slugs = await run_in_threadpool(pages.platform_slugs, db_of(request))
        return page(request, info, "console/measure_new.html", {"platforms": slugs})

    @router.post("/measures")
    async def measure_propose(request: Request) -> Response:
        from takedown.clock import parse_time
        from takedown.policy import measures as policy

        info, form = await posted(request)
        actor = writing(info)
        action = field_text(form, "action") or ""
        rate = field_number(form, "rate_kbps", required=action == "throttle")
        if rate is not None and (rate != int(rate) or abs(rate) > 2**31):
            raise InputError("rate must be whole kbit/s", where="rate_kbps")
        if action != "throttle":
            rate = None
        scope = {
            cls: pct for cls in ("mobile", "fixed") if (pct := field_number(form, cls)) is not None
        } or None
        classes = [c.strip() for c in (form.get("classes") or "").split(",") if c.strip()]
        expires = None
        if text := field_text(form, "expires", required=False):
            try:
                expires = parse_time(text if "T" in text else f"{text}T00:00:00Z")
            except ValueError:
                raise InputError("not an ISO 8601 time or date", where="expires") from None
        measure_id = await run_in_threadpool(
            lambda: policy.add(
                db_of(request),
                field_text(form, "platform") or "",
                action=action,
                decision=field_text(form, "decision") or "",
                reason=field_text(form, "reason") or "",
                now=now_of(request),
                actor=actor.label,
                rate_kbps=int(rate) if rate is not None else None,
                classes=classes,
                scope=scope,
                expires=expires,
            )
        )
        return done(request, f"/measures/{measure_id}", "proposed", {"id": measure_id})

    @router.get("/measures/{measure_id}")
    async def measure(request: Request, measure_id: RowId) -> Response:
        info = await staff(request)
        reading(info)
        base = console.base_url(request)
        data = await run_in_threadpool(
            pages.measure_page, db_of(request), measure_id, now_of(request), info.actor, base
        )
        return page(request, info, "console/measure.html", data)

    @router.post("/measures/{measure_id}/approve")
    async def measure_approve(request: Request, measure_id: RowId) -> Response:
        from takedown.policy import measures as policy

        info, _form = await posted(request)
        record = await run_in_threadpool(
            policy.approve, db_of(request), measure_id, info.actor, now_of(request)
        )
        return done(request, f"/measures/{measure_id}", "approved", record.as_json())

    @router.post("/measures/{measure_id}/reject")
    async def measure_reject(request: Request, measure_id: RowId) -> Response:
        from takedown.policy import measures as policy

        info, form = await posted(request)
        reason = form.get("reason", "")
        record = await run_in_threadpool(
            policy.reject, db_of(request), measure_id, info.actor, reason, now_of(request)
        )
        return done(request, f"/measures/{measure_id}", "rejected", record.as_json())

    @router.post("/measures/{measure_id}/lift")
    async def measure_lift(request: Request, measure_id: RowId) -> Response:
        from takedown.policy import measures as policy

        info, form = await posted(request)
        actor = writing(info)
        decision = field_text(form, "decision") or ""
        await run_in_threadpool(
            policy.lift, db_of(request), measure_id, decision, now_of(request), actor.label
        )
        return done(request, f"/measures/{measure_id}", "lifted", {"id": measure_id})

    # --- appeals (their own module: the appeals service is merged separately) ---------------

    from takedown.web.console import appeals

    appeals.add_routes(router, staff=staff, posted=posted, page=page, done=done)
    return router
