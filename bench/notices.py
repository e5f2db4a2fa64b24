"""Notices over loopback: `takedown serve` (worker) → `takedown sim platform` → platform API.

Measures, in one run:
- delivery: time from `notices send` (N items, one platform) until every notice is
  delivered (2xx recorded) and acknowledged by the simulator, quoted as "delivery only"
  (from the end of `send`, the outbox write) and "send + delivery"; baseline: a bare httpx
  loop that reads the same notices from the database, encodes and signs the same bodies and
  posts them with the same concurrency as the worker (``delivery.CONCURRENCY``) to the same
  simulator (reset). Building bodies is inside both timings (the worker's ``prepare``), so
  the difference is the outbox bookkeeping: claims, the delivery log, states, audit events.
  ``--rounds R`` repeats send/deliver/baseline with fresh items (the machine may be busy);
  ratios are quoted per round and as the median;
- the platform API's batch answers: responses per second at 1,000 items per request.

Usage: python -m bench notices [--quick] [--items N] [--per-notice K] [--rounds R] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
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
from takedown.notices.delivery import CONCURRENCY
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Item, Notice

TAKEDOWN = str(Path(sys.executable).parent / "takedown")


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


def _bodies(db: Database, ids: list[int]) -> list[tuple[int, bytes]]:
    """The notices' bodies, read and encoded as the worker does (one read for all)."""
    with db.reading() as s:
        docs = outbox.notice_documents(s, ids)
    return [(nid, outbox.encode(docs[nid])) for nid in ids]


async def _bare_loop(db: Database, url: str, secret: str, ids: list[int]) -> tuple[float, float]:
    """Read, encode, sign and POST the notices; return (total seconds, of which building)."""
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
        bodies = await asyncio.to_thread(_bodies, db, ids)
        built = time.perf_counter() - start
        await asyncio.gather(*(one(n, b) for n, b in bodies))
        return time.perf_counter() - start, built


def _add_items(db: Database, platform_id: int, n: int, first: int, now: datetime) -> None:
    with db.session() as s:
        s.execute(
            insert(Item),
            [
                {
                    "target": f"https://twitter.com/u{k % 997}/status/{k}",
                    "kind": "url",
                    "host": "twitter.com",
                    "platform_id": platform_id,
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
                for k in range(first, first + n)
            ],
        )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench notices")
    ap.add_argument("--quick", action="store_true", help="2,000 items")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--per-notice", type=int, default=100, help="items per notice")
    ap.add_argument("--rounds", type=int, default=None, help="repeats (default 3, quick 1)")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    args = ap.parse_args(argv)
    n_items = args.items or (2_000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
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
    env = {**os.environ, "TAKEDOWN_DB": db_url}
    env.pop("TAKEDOWN_CLOCK", None)
    sim_cmd = [TAKEDOWN, "sim", "platform", "--port", str(sim_port), "--secret", secret]
    sim_cmd += ["--api", api_url, "--token", token, "--tick-every", "0"]
    procs = [
        subprocess.Popen(sim_cmd, env=env),
        subprocess.Popen([TAKEDOWN, "serve", "--port", str(api_port), "--poll", "0.02"], env=env),
    ]
    rows: list[tuple[float, float, float, float, float]] = []
    try:
        _wait(lambda: httpx.get(f"{sim_url}/_sim/stats").status_code == 200, "simulator")
        _wait(lambda: httpx.get(f"{api_url}/healthz").status_code == 200, "takedown serve")
        print(
            f"items: {n_items}, per notice: {args.per_notice}, db: {db.dialect}, "
            f"concurrency (worker and baseline): {CONCURRENCY}, rounds: {rounds}"
        )
        expected = 0
        for r in range(rounds):
            _add_items(db, info.id, n_items, r * n_items, now)
            httpx.post(f"{sim_url}/_sim/reset")

            # --- delivery through the outbox and the worker ----------------------------
            start = time.perf_counter()
            [res] = outbox.send(
                db, now=datetime.now(UTC), actor="bench", platform=slug, max_items=args.per_notice
            )
            sent = time.perf_counter() - start
            total = len(res.notices)
            expected += total
            marks: dict[str, float] = {}

            def done(expected: int = expected, start: float = start, marks=marks) -> bool:  # type: ignore[no-untyped-def]
                d, a = _counts(db)
                if d == expected and "delivered" not in marks:
                    marks["delivered"] = time.perf_counter() - start
                return d == expected and a == expected

            _wait(done, "delivery and acknowledgement")
            full = time.perf_counter() - start
            delivered_at = marks["delivered"]
            stats = httpx.get(f"{sim_url}/_sim/stats").json()
            assert stats["accepted"] == total and stats["items"] == n_items, stats

            # --- baseline: read, encode, sign, POST; bare httpx, same simulator (reset) --
            httpx.post(f"{sim_url}/_sim/reset")
            # the simulator acknowledges again; the API answers idempotently
            bare, built = asyncio.run(
                _bare_loop(db, f"{sim_url}/notices", secret, list(res.notices))
            )
            assert httpx.get(f"{sim_url}/_sim/stats").json()["accepted"] == total
            _wait(
                lambda n=total: httpx.get(f"{sim_url}/_sim/stats").json()["acks_sent"] == n, "acks"
            )
            rows.append((sent, delivered_at - sent, delivered_at, full, bare))
            print(
                f"round {r + 1}: {total} notices; send (outbox write) {sent:.3f} s; "
                f"delivery only {delivered_at - sent:.3f} s; send + delivery {delivered_at:.3f} s; "
                f"+ acked {full:.3f} s; bare loop {bare:.3f} s (building bodies {built:.3f} s); "
                f"ratios {(delivered_at - sent) / bare:.2f}x / {delivered_at / bare:.2f}x"
            )

        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        sent, only, both, full, bare = med
        print(f"median of {rounds} round(s), {total} notices each:")
        print(f"  send (outbox write):              {sent:.3f} s")
        print(f"  delivery only (2xx recorded):     {only:.3f} s  ({total / only:.0f} notices/s)")
        print(f"  send + delivery:                  {both:.3f} s")
        print(f"  send + delivery + acknowledged:   {full:.3f} s")
        print(f"  baseline bare httpx loop (c={CONCURRENCY}):")
        print(f"    read, encode, sign, POST:       {bare:.3f} s  ({total / bare:.0f} notices/s)")
        ratios_only = [o / b for _s, o, _d, _f, b in rows]
        ratios_both = [d / b for _s, _o, d, _f, b in rows]
        print(
            f"  ratio delivery only / bare:       {statistics.median(ratios_only):.2f}x  "
            f"(goal <= 2x)"
        )
        print(f"  ratio send + delivery / bare:     {statistics.median(ratios_both):.2f}x")

        # --- platform API: batch answers -------------------------------------------------
        with db.reading() as s:
            ids = list(
                s.scalars(
                    select(Item.id)
                    .where(Item.platform_id == info.id)
                    .order_by(Item.id)
                    .limit(n_items)
                )
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
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
