"""Notices over loopback: `takedown serve` (worker) → `takedown sim platform` → platform API.

Measures, in one run:
- delivery: time from `notices send` (N items, one platform) until every notice is
  delivered and acknowledged by the simulator; baseline: a bare httpx loop posting the same
  signed bodies with the same concurrency to the same simulator (reset);
- the platform API's batch answers: responses per second at 1,000 items per request.

Usage: python -m bench notices [--quick] [--items N] [--per-notice K] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from takedown import platforms
from takedown.notices import outbox, signing
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Item, Notice

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
CONCURRENCY = 16


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, what: str, limit: float = 600.0, every: float = 0.01) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def _counts(db: Database) -> tuple[int, int]:
    with db.reading() as s:
        delivered = s.scalar(
            select(func.count()).select_from(Notice).where(Notice.delivery_state == "delivered")
        )
        acked = s.scalar(
            select(func.count()).select_from(Notice).where(Notice.acknowledged_at.is_not(None))
        )
    return int(delivered or 0), int(acked or 0)


async def _bare_loop(url: str, secret: str, bodies: list[tuple[int, bytes]]) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY * 2)) as client:

        async def one(nid: int, body: bytes) -> None:
            async with sem:
                headers = {
                    "Content-Type": "application/json",
                    signing.HEADER: signing.sign(secret, body, int(time.time())),
                    signing.IDEMPOTENCY_HEADER: str(nid),
                }
                r = await client.post(url, content=body, headers=headers)
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(n, b) for n, b in bodies))
        return time.perf_counter() - start


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench notices")
    ap.add_argument("--quick", action="store_true", help="2,000 items")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--per-notice", type=int, default=100, help="items per notice")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    args = ap.parse_args(argv)
    n_items = args.items or (2_000 if args.quick else 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-notices-"))
    db_url = args.db or f"sqlite:///{tmp / 'takedown.db'}"
    db = Database(db_url)
    upgrade(db)
    now = datetime.now(UTC)
    sim_port, api_port = _port(), _port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    slug = f"bench{os.getpid()}"
    info, secret = platforms.add_platform(
        db,
        slug,
        name="Bench",
        notice_url=f"{sim_url}/notices",
        hosts=[platforms.parse_host_spec("twitter.com=text")],
        now=now,
        actor="bench",
    )
    token = platforms.issue_token(db, slug, now=now, actor="bench")
    with db.session() as s:
        s.execute(
            insert(Item),
            [
                {
                    "target": f"https://twitter.com/u{k % 997}/status/{k}",
                    "kind": "url",
                    "host": "twitter.com",
                    "platform_id": info.id,
                    "category": "suicide",
                    "basis": "149-FZ art. 15.1",
                    "decision_ref": f"B-{k}",
                    "authority": "RKN",
                    "decision_date": "2021-03-01",
                    "listed_at": now,
                    "flags": "",
                    "state": "open",
                    "state_at": now,
                }
                for k in range(n_items)
            ],
        )
    env = {**os.environ, "TAKEDOWN_DB": db_url, "TAKEDOWN_ACTOR": "bench"}
    env.pop("TAKEDOWN_CLOCK", None)
    procs = [
        subprocess.Popen(
            [
                TAKEDOWN,
                "sim",
                "platform",
                "--port",
                str(sim_port),
                "--secret",
                secret,
                "--api",
                api_url,
                "--token",
                token,
                "--tick-every",
                "0",
            ],
            env=env,
        ),
        subprocess.Popen([TAKEDOWN, "serve", "--port", str(api_port), "--poll", "0.02"], env=env),
    ]
    try:
        _wait(lambda: httpx.get(f"{sim_url}/_sim/stats").status_code == 200, "simulator")
        _wait(lambda: httpx.get(f"{api_url}/healthz").status_code == 200, "takedown serve")
        print(f"items: {n_items}, per notice: {args.per_notice}, db: {db.dialect}")

        # --- delivery through the outbox and the worker --------------------------------
        start = time.perf_counter()
        [res] = outbox.send(
            db, now=datetime.now(UTC), actor="bench", platform=slug, max_items=args.per_notice
        )
        sent = time.perf_counter() - start
        total = len(res.notices)
        delivered_at = None

        def done() -> bool:
            nonlocal delivered_at
            d, a = _counts(db)
            if d == total and delivered_at is None:
                delivered_at = time.perf_counter() - start
            return d == total and a == total

        _wait(done, "delivery and acknowledgement")
        full = time.perf_counter() - start
        stats = httpx.get(f"{sim_url}/_sim/stats").json()
        assert stats["accepted"] == total and stats["items"] == n_items, stats

        # --- baseline: the same bodies, bare httpx, same simulator ----------------------
        with db.reading() as s:
            bodies = [(nid, outbox.encode(outbox.notice_document(s, nid))) for nid in res.notices]
        httpx.post(f"{sim_url}/_sim/reset")
        # the simulator stays as it was (it acknowledges again; the API answers idempotently)
        bare = asyncio.run(_bare_loop(f"{sim_url}/notices", secret, bodies))
        assert httpx.get(f"{sim_url}/_sim/stats").json()["accepted"] == total

        print(f"notices: {total}  (outbox write {sent * 1000:.0f} ms)")
        print(
            f"delivered (all 2xx recorded):     {delivered_at:.3f} s  "
            f"({total / delivered_at:.0f} notices/s)"
        )
        print(f"delivered and acknowledged:       {full:.3f} s")
        print(
            f"baseline bare httpx loop (c={CONCURRENCY}):  {bare:.3f} s  "
            f"({total / bare:.0f} notices/s)"
        )
        print(f"ratio delivered / bare:           {delivered_at / bare:.2f}x  (goal <= 2x)")
        print(f"ratio delivered+acked / bare:     {full / bare:.2f}x")

        # --- platform API: batch answers -------------------------------------------------
        with db.reading() as s:
            ids = list(
                s.scalars(select(Item.id).where(Item.platform_id == info.id).order_by(Item.id))
            )
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api_url, headers=headers, timeout=120) as client:
            start = time.perf_counter()
            for k in range(0, len(ids), 1000):
                body = {
                    "responses": [
                        {"item_id": i, "action": "removed", "key": f"bench-{i}"}
                        for i in ids[k : k + 1000]
                    ]
                }
                r = client.post("/api/platform/responses", json=body)
                r.raise_for_status()
            took = time.perf_counter() - start
        print(
            f"platform API batch answers:       {len(ids) / took:.0f} responses/s "
            f"({len(ids)} in {took:.2f} s, 1,000 per request)"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        db.close()
    return 0
