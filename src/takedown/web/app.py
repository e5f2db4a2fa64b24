"""The one web app. ``build(settings)`` assembles it whole for ``takedown serve``, the demo
and the tests; ``create_app`` is the frame it builds on (errors, /healthz, platform API).

``create_app`` hooks: ``feed_dir`` (a directory served under ``/feed/``), ``routers``
(extra APIRouters), ``metrics`` (an ASGI app mounted at ``/metrics``), and a delivery
``worker`` and ``background`` tasks (anything with ``async run(stop)``, such as the public
lookup index) run as asyncio tasks for the app's lifetime.

Example::

    app = build(AppSettings(db=db, clock=clock, public_url="https://register.example"))
    uvicorn.run(app, host="127.0.0.1", port=8470)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from takedown.clock import Clock
from takedown.errors import TakedownError
from takedown.store.db import Database
from takedown.transparency import DEFAULT_APPEAL, PublicSettings
from takedown.web.console.sessions import ConsoleSettings
from takedown.web.contract import install, operation_id
from takedown.web.guard import PublicGuard, PublicLimits
from takedown.web.lookup_index import LookupIndex
from takedown.web.templating import STATIC_DIR, STATIC_PREFIX


@dataclass(frozen=True)
class DeliverySettings:
    """How the notice delivery worker run beside the app behaves."""

    poll: float = 0.5  # seconds between idle outbox polls
    lease: timedelta = timedelta(seconds=120)  # claim lease, clock time
    timeout: float = 10.0  # webhook timeout, seconds


@dataclass(frozen=True)
class AppSettings:
    """Everything the whole app is built from.

    ``public_url``: base URL of the public pages and directive references (None: each
    request's own); ``appeal_text``/``appeal_url``: how the public may appeal; ``feed_dir``:
    a feed repository served at ``/feed/`` (its latest audit head shown on ``/public/``);
    ``delivery``: run the notice delivery worker; ``public_limits``: what the public pages
    may take (``web.guard``); ``lookup_index``: the public lookup index to use (None: the
    app makes its own; tests and the bench pass one to watch its builds); ``console``: the
    staff console's session lifetimes and login limit (``web.console.sessions``);
    ``profile``: the deployment's jurisdiction profile, whose ``language`` is the public
    pages' default; ``language``: that default said outright (it wins over the profile's;
    neither: English). A reader's ``?lang=`` and ``Accept-Language`` come first (``web.i18n``).
    """

    db: Database
    clock: Clock
    public_url: str | None = None
    appeal_text: str = DEFAULT_APPEAL
    appeal_url: str | None = None
    feed_dir: str | Path | None = None
    delivery: DeliverySettings | None = None
    public_limits: PublicLimits = field(default_factory=PublicLimits)
    lookup_index: LookupIndex | None = None
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    profile: str | None = None
    language: str | None = None

    def public_language(self) -> str:
        """The public pages' default language: ``language``, else the profile's, else en."""
        from takedown import config

        if self.language is not None:
            return config.check_language(self.language, where="--language")
        if self.profile is not None:
            return config.default().profile(self.profile, where="--profile").language
        return config.DEFAULT_LANGUAGE


def build(settings: AppSettings) -> Any:
    """The whole app (platform, regulator and public APIs, the staff console, /metrics,
    request counting) as an ASGI app, with the delivery worker when ``settings.delivery``
    is set."""
    from takedown.web import appeals, console, operator_api, public, regulator_api
    from takedown.web.metrics import Metrics

    db, clock = settings.db, settings.clock
    worker = None
    if settings.delivery is not None:
        from takedown.notices.delivery import DeliveryWorker

        d = settings.delivery
        worker = DeliveryWorker(db, clock, poll_interval=d.poll, lease=d.lease, timeout=d.timeout)
    public_settings = PublicSettings(
        public_url=settings.public_url,
        appeal_text=settings.appeal_text,
        appeal_url=settings.appeal_url,
    )
    limits = settings.public_limits
    index = settings.lookup_index or LookupIndex(db, clock, poll=limits.index_poll)
    metrics = Metrics(db, clock)
    app = create_app(
        db,
        clock=clock,
        worker=worker,
        background=[index],
        feed_dir=settings.feed_dir,
        routers=[
            operator_api.make_router(),
            regulator_api.make_router(public_url=settings.public_url),
            public.make_router(public_settings, index, feed_dir=settings.feed_dir),
            appeals.make_router(public_settings),
            console.make_router(settings.console, public_url=settings.public_url),
        ],
        metrics=metrics.app,
    )
    app.state.public_language = settings.public_language()  # read by web.i18n.reader_of
    return metrics.middleware(PublicGuard(app, limits))


DESCRIPTION = """The register's HTTP APIs: the **platform API** (`/api/platform/...`, a
platform's bearer token), the **regulator API** (`/api/...`, a staff bearer token) and the
**public pages** (`/public/...`, no token: HTML, or JSON with `?format=json` or
`Accept: application/json`). Every error is `{"error": ..., "where": ...}`, `where` naming
the request field, query parameter, header or path segment at fault. Platforms receive
notices at their notice URL (the `notice` webhook)."""

# FastAPI's location of a bad parameter -> how the request names it
_LOCATIONS = {"header": {"idempotency-key": "Idempotency-Key"}}


def error_body(exc: TakedownError) -> dict[str, Any]:
    where = exc.where
    if where is not None and where.startswith("--"):
        # a library function named the CLI's flag and no route renamed it
        # (``contract.api_fields``): never send a CLI flag to an API client
        where = where[2:]
    return {"error": exc.message, "where": where}


def validation_where(loc: tuple[Any, ...]) -> str:
    """``("query", "limit")`` -> ``limit``; ``("header", "idempotency-key")`` ->
    ``Idempotency-Key``; ``("body", "responses", 0, "action")`` -> ``responses[0].action``."""
    if not loc:
        return "request"
    kind, rest = loc[0], loc[1:]
    if kind in ("query", "path", "header", "cookie") and rest:
        name = str(rest[0])
        return _LOCATIONS.get(kind, {}).get(name, name)
    out = ""
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or str(kind)


def create_app(
    db: Database,
    *,
    clock: Clock,
    worker: Any | None = None,
    background: Sequence[Any] = (),
    feed_dir: str | Path | None = None,
    routers: Sequence[APIRouter] = (),
    metrics: Callable[..., Any] | None = None,
    title: str = "takedown",
) -> FastAPI:
    """Build the app over ``db`` and ``clock``; start ``worker.run(stop)`` and each of
    ``background``'s ``run(stop)`` while serving."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop)) if worker is not None else None
        others = [asyncio.create_task(b.run(stop)) for b in background]
        app.state.worker_stop = stop
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            for other in others:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(other, timeout=5)

    app = FastAPI(
        title=title,
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.db = db
    app.state.clock = clock
    app.state.worker = worker

    @app.exception_handler(TakedownError)
    async def _takedown_error(_request: Request, exc: TakedownError) -> JSONResponse:
        return JSONResponse(
            error_body(exc), status_code=exc.http_status, headers=dict(exc.http_headers) or None
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = validation_where(tuple(first.get("loc", ())))
        return JSONResponse({"error": first.get("msg", "invalid request"), "where": where}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown paths (404) and methods (405, with Allow) answer like every other error
        where = "method" if exc.status_code == 405 else "path"
        return JSONResponse(
            {"error": str(exc.detail).lower(), "where": where},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    from takedown.web.platform_api import router as platform_router

    app.include_router(platform_router)
    for router in routers:
        app.include_router(router)
    install(app)
    if metrics is not None:
        app.mount("/metrics", metrics)
    app.mount(STATIC_PREFIX, StaticFiles(directory=str(STATIC_DIR)), name="static")
    if feed_dir is not None:
        from takedown.feed.repository import SERVED_DIRS

        # Only the public halves of the repository: never keys/ or the settings file.
        for sub in SERVED_DIRS:
            (Path(feed_dir) / sub).mkdir(parents=True, exist_ok=True)
            app.mount(
                f"/feed/{sub}", StaticFiles(directory=str(Path(feed_dir) / sub)), name=f"feed-{sub}"
            )
    return app
