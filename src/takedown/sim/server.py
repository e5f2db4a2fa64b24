"""The simulator's HTTP shell: webhook receiver, content server, API client, control.

Routes:

- ``POST /notices``: the platform's notice URL. Verifies ``Takedown-Signature`` (300 s
  window against the simulator's clock) and acts on each ``Idempotency-Key`` once.
- ``GET /<path>`` with ``Host: <platform host>``: the post (text page, or media bytes),
  404 once removed, 451 with a withheld marker once withheld (unless the visitor's
  address is in ``abroad``).
- ``GET /media/R000000.jpg`` … on a media host: photos of removed items that users posted
  again (``sim.media``), until the platform finds them with the regulator's shared hashes.
- ``POST /_sim/tick``: act as the behaviour says for the clock's ``now``; report through
  the platform API; a platform that responds also fetches the shared hashes
  (``/api/platform/hashes``), takes down the re-posts they match and reports them
  (``/api/platform/matches``). ``GET /_sim/reposts`` lists the re-posts' URLs.
  ``GET /_sim/stats``, ``/_sim/notices``, ``/_sim/items``,
  ``/_sim/posts``; ``POST /_sim/faults`` (webhooks: ``status``, ``delay_ms``; content
  pages: ``content_delay_ms``) and ``/_sim/config``
  (``secret``, ``api``, ``token``), ``/_sim/reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from takedown.clock import Clock
from takedown.errors import AuthError, Conflict, InputError
from takedown.notices import signing
from takedown.sim import media
from takedown.sim.behaviour import Behaviour
from takedown.sim.state import Action, SimState

MAX_NOTICE = 32 * 1024 * 1024
BATCH = 1000
WITHHELD_MARKER = "takedown-withheld"
STREAM_MAX = 1 << 30
STREAM_CHUNK = 64 * 1024


@dataclass
class Faults:
    status: int | None = None  # answer every webhook with this status, doing nothing
    delay_ms: int = 0  # wait before handling a webhook
    content_delay_ms: int = 0  # wait before answering a content request (a distant platform)


class SimPlatform:
    """A simulated platform: state, behaviour, clock and the link to the platform API."""

    def __init__(
        self,
        behaviour: Behaviour,
        clock: Clock,
        *,
        secret: str | None = None,
        api: str | None = None,
        token: str | None = None,
        items: int = 0,
        tick_every: float = 0.0,
    ) -> None:
        self.behaviour = behaviour
        self.clock = clock
        self.secret = secret
        self.api = api.rstrip("/") if api else None
        self.token = token
        self.state = SimState(behaviour)
        self.faults = Faults()
        self.posts = items
        self.tick_every = tick_every
        self.pending: list[Action] = []
        self.pending_acks: set[int] = set()
        self.client: httpx.AsyncClient | None = None
        self._tick_lock = asyncio.Lock()
        self._ack_sem = asyncio.Semaphore(16)
        self._tasks: set[asyncio.Task[None]] = set()
        self._media_block = _media_block(behaviour.media_kib * 1024, behaviour.seed)
        self.reposts_removed: set[int] = set()
        self._hash_cursor = 0

    # --- platform API client -------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _ack(self, notice_id: int) -> None:
        if not (self.api and self.token and self.client):
            return
        async with self._ack_sem:
            try:
                r = await self.client.post(
                    f"{self.api}/api/platform/notices/{notice_id}/ack", headers=self._headers()
                )
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
        if ok:
            self.pending_acks.discard(notice_id)
            self.state.stats.acks_sent += 1
        else:
            self.state.stats.ack_errors += 1

    def schedule_ack(self, notice_id: int) -> None:
        if not self.behaviour.ack or not (self.api and self.token):
            return
        self.pending_acks.add(notice_id)
        task = asyncio.get_running_loop().create_task(self._ack(notice_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_responses(self) -> int:
        """Report pending actions through the API in batches; keep what failed."""
        if not (self.behaviour.respond and self.api and self.token and self.client):
            self.pending.clear()
            return 0
        sent = 0
        while self.pending:
            chunk = self.pending[:BATCH]
            body = {
                "responses": [
                    {
                        "item_id": a.item_id,
                        "action": a.response,
                        "reason": a.reason,
                        "policy": a.policy,
                        "key": f"sim-{a.item_id}-{a.response}",
                    }
                    for a in chunk
                ]
            }
            try:
                r = await self.client.post(
                    f"{self.api}/api/platform/responses", json=body, headers=self._headers()
                )
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if not ok:
                self.state.stats.response_errors += 1
                break
            del self.pending[: len(chunk)]
            sent += len(chunk)
            self.state.stats.responses_sent += len(chunk)
        return sent

    async def tick(self) -> dict[str, Any]:
        """Act for the clock's ``now`` and report; ticks never overlap."""
        async with self._tick_lock:
            now = self.clock.now()
            actions = self.state.tick(now)
            self.pending.extend(actions)
            for nid in sorted(self.pending_acks):
                await self._ack(nid)
            sent = await self._send_responses()
            await self._match_reposts()
            return {
                "now": now.isoformat(),
                "actions": len(actions),
                "sent": sent,
                "pending": len(self.pending),
                **self.state.counts(),
            }

    def media_host(self) -> str | None:
        media_host = next((p for p, c in self.behaviour.hosts if c == "media"), None)
        return media_host.replace("*.", "pbs.") if media_host else None

    def repost_urls(self) -> list[str]:
        host = self.media_host()
        if host is None:
            return []
        return [f"https://{host}{media.repost_path(k)}" for k in range(media.REPOSTS)]

    async def _match_reposts(self) -> None:
        """Hash matching as platforms run it: the regulator's new PDQ hashes against the
        photos on the platform; a match is taken down and reported."""
        if not (self.behaviour.respond and self.api and self.token and self.client):
            return
        from takedown.media.hashing import hash_media
        from takedown.media.index import PdqIndex

        try:
            r = await self.client.get(
                f"{self.api}/api/platform/hashes",
                params={"since": self._hash_cursor},
                headers=self._headers(),
            )
            r.raise_for_status()
        except httpx.HTTPError:
            return
        page = r.json()
        if not page["hashes"]:
            return
        live = [k for k in range(media.REPOSTS) if k not in self.reposts_removed]
        index = PdqIndex.from_hex([hash_media(media.reposted(k)).pdq or "" for k in live])
        matches = []
        for h in page["hashes"]:
            for row, _distance in index.query_hex(h["signal_value"], 31):
                k = live[row]
                url = f"https://{self.media_host()}{media.repost_path(k)}"
                matches.append(
                    {
                        "item_id": h["item_id"],
                        "action": "removed",
                        "signal_type": "pdq",
                        "hash": h["signal_value"],
                        "url": url,
                        "key": f"sim-repost-{k}",
                    }
                )
        if matches:
            try:
                r = await self.client.post(
                    f"{self.api}/api/platform/matches",
                    json={"matches": matches},
                    headers=self._headers(),
                )
                r.raise_for_status()
            except httpx.HTTPError:
                return
            self.reposts_removed.update(int(m["key"].rsplit("-", 1)[1]) for m in matches)
        self._hash_cursor = page["next_since"] or page["hashes"][-1]["id"]

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_every)
            with contextlib.suppress(Exception):
                await self.tick()

    # --- webhook -------------------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        stats = self.state.stats
        stats.received += 1
        body = await request.body()
        if self.faults.delay_ms:  # a slow receiver: it has the body and works on it slowly
            await asyncio.sleep(self.faults.delay_ms / 1000)
        if self.faults.status is not None:
            stats.faulted += 1
            return JSONResponse({"error": "simulated fault"}, self.faults.status)
        if len(body) > MAX_NOTICE:
            return JSONResponse({"error": "notice too large"}, 413)
        if not self.secret:
            return JSONResponse({"error": "simulator has no webhook secret"}, 503)
        now = self.clock.now()
        try:
            signing.verify(self.secret, body, request.headers.get(signing.HEADER), now.timestamp())
        except AuthError as exc:
            if "window" in exc.message:
                stats.stale += 1
            else:
                stats.bad_signature += 1
            return JSONResponse({"error": str(exc)}, 401)
        key = request.headers.get(signing.IDEMPOTENCY_HEADER)
        if not key:
            stats.malformed += 1
            return JSONResponse({"error": "missing Idempotency-Key"}, 400)
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            stats.malformed += 1
            return JSONResponse({"error": f"malformed JSON: {exc}"}, 400)
        try:
            outcome = self.state.receive(key, body, doc, now)
        except Conflict as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if outcome == "accepted":
            self.schedule_ack(int(doc["notice_id"]))
        return JSONResponse({"status": outcome, "notice_id": doc.get("notice_id")})

    # --- content -------------------------------------------------------------------
    def content(self, request: Request, path: str) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        cls = self.behaviour.host_class(host)
        if cls is None:
            return JSONResponse({"error": f"{host!r} is not a host of this platform"}, 404)
        full = "/" + path + (f"?{request.url.query}" if request.url.query else "")
        client = request.client.host if request.client else None
        status = self.state.status(host, full, abroad=self.behaviour.is_abroad(client))
        if status == 404:
            return Response(b"This post has been removed.\n", 404, media_type="text/plain")
        if status == 451:
            country = self.behaviour.country
            page = (
                f'<!doctype html><meta name="{WITHHELD_MARKER}" content="{country}">'
                f"<p>This content has been withheld in {country} in response to a legal demand."
            )
            return Response(
                page.encode(),
                451,
                media_type="text/html",
                headers={"Takedown-Withheld": country},
            )
        repost = media.repost_seed(full) if cls == "media" else None
        if repost is not None:
            if repost in self.reposts_removed:
                return Response(b"This post has been removed.\n", 404, media_type="text/plain")
            return Response(media.reposted(repost), 200, media_type="image/jpeg")
        if cls == "media" or full.rsplit(".", 1)[-1] in {"jpg", "png", "mp4", "gif"}:
            tag = hashlib.sha256(f"{host}{full}".encode()).digest()
            return Response(tag + self._media_block[len(tag) :], 200, media_type="image/jpeg")
        page = f"<!doctype html><title>{host}{full}</title><article>post {host}{full}</article>"
        return Response(page.encode(), 200, media_type="text/html")

    def post_urls(self, offset: int, limit: int) -> list[dict[str, str]]:
        text_host = next((p for p, c in self.behaviour.hosts if c == "text"), None)
        media = next((p for p, c in self.behaviour.hosts if c == "media"), None)
        media_host = media.replace("*.", "pbs.") if media else None
        out = []
        for k in range(offset, min(self.posts, offset + limit)):
            if k % 2 == 0 and text_host and not text_host.startswith("*."):
                out.append(
                    {
                        "url": f"https://{text_host}/user{k % 1000}/status/{10**15 + k}",
                        "class": "text",
                    }
                )
            elif media_host:
                out.append({"url": f"https://{media_host}/media/{k:010d}.jpg", "class": "media"})
        return out


def _media_block(size: int, seed: int) -> bytes:
    block = hashlib.sha256(f"media:{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def create_sim_app(sim: SimPlatform) -> FastAPI:
    """The simulator's ASGI app."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sim.client = httpx.AsyncClient(timeout=30.0)
        ticker = asyncio.create_task(sim._ticker()) if sim.tick_every > 0 else None
        try:
            yield
        finally:
            if ticker is not None:
                ticker.cancel()
            await sim.client.aclose()

    app = FastAPI(title="takedown platform simulator", lifespan=lifespan)
    app.state.sim = sim

    @app.post("/notices")
    async def notices(request: Request) -> Response:
        return await sim.webhook(request)

    _inspection_routes(app, sim)
    _control_routes(app, sim)

    @app.get("/_sim/stream/{nbytes}")
    async def stream(request: Request, nbytes: int) -> Response:
        """``nbytes`` of media-like bytes under a platform host (for throughput tests)."""
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if sim.behaviour.host_class(host) is None:
            return JSONResponse({"error": f"{host!r} is not a host of this platform"}, 404)
        if not 0 < nbytes <= STREAM_MAX:
            return JSONResponse({"error": f"nbytes must be 1..{STREAM_MAX}"}, 400)
        chunk = (sim._media_block * (STREAM_CHUNK // len(sim._media_block) + 1))[:STREAM_CHUNK]

        async def body() -> AsyncIterator[bytes]:
            left = nbytes
            while left > 0:
                piece = chunk if left >= len(chunk) else chunk[:left]
                left -= len(piece)
                yield piece

        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"Content-Length": str(nbytes)},
        )

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def content(request: Request, path: str) -> Response:
        if sim.faults.content_delay_ms:
            await asyncio.sleep(sim.faults.content_delay_ms / 1000)
        return sim.content(request, path)

    return app


def _inspection_routes(app: FastAPI, sim: SimPlatform) -> None:
    """``/_sim/stats``, ``/_sim/notices``, ``/_sim/items``, ``/_sim/posts``: what it holds."""

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return {
            **sim.state.stats.as_json(),
            **sim.state.counts(),
            "notices": len(sim.state.notices),
            "pending_responses": len(sim.pending),
            "pending_acks": len(sim.pending_acks),
            "behaviour": sim.behaviour.name,
            "now": sim.clock.now().isoformat(),
        }

    @app.get("/_sim/notices")
    async def notice_list() -> dict[str, Any]:
        return {
            key: {
                "receipts": n.receipts,
                "items": len(n.items),
                "received_at": n.received_at.isoformat(),
            }
            for key, n in sim.state.notices.items()
        }

    @app.get("/_sim/items")
    async def item_list() -> list[dict[str, Any]]:
        return [
            {
                "id": i.id,
                "target": i.target,
                "fate": i.fate,
                "first_noticed": i.first_noticed.isoformat(),
                "acted_at": i.acted_at.isoformat() if i.acted_at else None,
            }
            for i in sorted(sim.state.items.values(), key=lambda i: i.id)
        ]

    @app.get("/_sim/reposts")
    async def reposts() -> dict[str, Any]:
        return {"urls": sim.repost_urls(), "removed": sorted(sim.reposts_removed)}

    @app.get("/_sim/posts")
    async def posts(offset: int = 0, limit: int = 1000) -> dict[str, Any]:
        return {"total": sim.posts, "posts": sim.post_urls(max(0, offset), min(limit, 100_000))}


def _control_routes(app: FastAPI, sim: SimPlatform) -> None:
    """``/_sim/tick``, ``/_sim/faults``, ``/_sim/reset``, ``/_sim/config``: driving it."""

    @app.post("/_sim/tick")
    async def tick() -> dict[str, Any]:
        return await sim.tick()

    @app.post("/_sim/faults")
    async def faults(request: Request) -> dict[str, Any]:
        data = await request.json()
        sim.faults = Faults(
            status=data.get("status"),
            delay_ms=int(data.get("delay_ms", 0)),
            content_delay_ms=int(data.get("content_delay_ms", 0)),
        )
        return asdict(sim.faults)

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        """Forget every notice, item and counter (benchmarks run phases on one simulator)."""
        sim.state = SimState(sim.behaviour)
        sim.pending.clear()
        sim.pending_acks.clear()
        return {"reset": True}

    @app.post("/_sim/config")
    async def configure(request: Request) -> dict[str, Any]:
        data = await request.json()
        if "secret" in data:
            sim.secret = data["secret"]
        if "api" in data:
            sim.api = str(data["api"]).rstrip("/") or None
        if "token" in data:
            sim.token = data["token"]
        return {"api": sim.api, "secret": bool(sim.secret), "token": bool(sim.token)}
