"""The pipelined worker: batched recording keeps the audit chain; many notices, once each;
stopping mid-run gives back claims on notices it never sent. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import select

from takedown.notices import outbox
from takedown.notices.delivery import Outcome, RetryPolicy, claim_due, record_outcomes
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import DeliveryAttempt, Event, Notice

from .support import START, add_items, make_platform
from .test_delivery import Exchange, exchange, states  # noqa: F401  (fixture)


def test_batched_outcomes_keep_the_chain_and_the_claim_rules(db: Database) -> None:
    pid, *_ = make_platform(db)
    add_items(db, pid, 7)
    [res] = outbox.send(db, now=START, actor="t", max_items=1)
    lease = timedelta(minutes=2)
    mine = claim_due(db, "w", START, limit=6, lease=lease)
    [theirs] = claim_due(db, "other", START, limit=6, lease=lease)
    with db.session() as s:  # another writer in between
        audit.record(s, at=START, actor="t", type="test.between", payload={"x": 1})
    ok, err = Outcome(200, None, 1.0), Outcome(503, None, 1.0)
    policy = RetryPolicy(max_attempts=1)
    later = START + timedelta(seconds=5)
    batch = [(n, ok, 0.5) for n in mine[:4]] + [(mine[4], err, 0.5), (theirs, ok, 0.5)]
    got = record_outcomes(db, "w", batch, later, policy)
    assert got == {**{n: "delivered" for n in mine[:4]}, mine[4]: "failed", theirs: "lost-claim"}
    # a second outcome for a notice already moved on in the same batch does not move it again
    again = record_outcomes(db, "w", [(mine[5], ok, 0.1), (mine[5], err, 0.1)], later, policy)
    assert again == {mine[5]: "delivered"}
    with db.reading() as s:
        assert audit.verify_chain(s).ok
        events = list(s.scalars(select(Event).order_by(Event.seq)))
        by_id = {n.id: n for n in s.scalars(select(Notice))}
        logged = Counter(s.scalars(select(DeliveryAttempt.notice_id)))
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    delivered = [e.payload["notice"] for e in events if e.type == "notice.delivered"]
    assert sorted(delivered) == sorted([*mine[:4], mine[5]])
    assert [e.payload["notice"] for e in events if e.type == "notice.delivery_failed"] == [mine[4]]
    for n in [*mine[:4], mine[5]]:
        assert by_id[n].delivery_state == "delivered" and by_id[n].delivered_at == later
        assert by_id[n].claimed_by is None and by_id[n].attempts == 1
    assert by_id[mine[4]].delivery_state == "failed" and by_id[mine[4]].next_attempt_at is None
    # the other worker's claim is untouched; its attempt is only logged
    assert by_id[theirs].claimed_by == "other" and by_id[theirs].delivery_state == "pending"
    assert logged[theirs] == 1 and logged[mine[5]] == 2
    assert len(res.notices) == 7
    # the chain goes on with ordinary writers after a batch
    with db.session() as s:
        audit.record(s, at=later, actor="t", type="test.after", payload={})
    with db.reading() as s:
        assert audit.verify_chain(s).ok


async def test_many_notices_delivered_once_each(exchange: Exchange) -> None:  # noqa: F811
    add_items(exchange.db, exchange.pid, 45)
    [res] = outbox.send(exchange.db, now=START, actor="t", max_items=1)
    # small batches and few POSTs in flight: claims run ahead while earlier ones send
    worker = exchange.worker(batch=8, concurrency=3)
    assert await worker.run_until_idle() == 45
    await worker.aclose()
    assert [s for _, s, _ in states(exchange.db)] == ["delivered"] * 45
    stats = exchange.stats()
    assert stats["accepted"] == 45 and stats["duplicates"] == 0 and stats["received"] == 45
    with exchange.db.reading() as s:
        assert audit.verify_chain(s).ok
        delivered = Counter(
            e.payload["notice"]
            for e in s.scalars(select(Event).where(Event.type == "notice.delivered"))
        )
    assert delivered == Counter(res.notices)
    assert worker.delivered == 45


async def test_stop_gives_back_claims_on_unsent_notices(exchange: Exchange) -> None:  # noqa: F811
    add_items(exchange.db, exchange.pid, 12)
    outbox.send(exchange.db, now=START, actor="t", max_items=1)
    exchange.faults(delay_ms=300)
    worker = exchange.worker(batch=12, concurrency=2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with httpx.AsyncClient() as client:
        for _ in range(500):  # bounded: until the first receipt
            if (await client.get(f"{exchange.sim_url}/_sim/stats")).json()["received"]:
                break
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    rows = states(exchange.db)
    with exchange.db.reading() as s:
        claimed = list(s.scalars(select(Notice.id).where(Notice.claimed_by.is_not(None))))
    sent = exchange.stats()["received"]
    assert claimed == []  # every claim was either recorded or given back
    assert sum(1 for _, st, _ in rows if st == "delivered") == sent < 12
    assert all(n == 0 for _, st, n in rows if st == "pending")  # never sent, not counted
    # another worker picks the rest up at once (no lease to wait out)
    rest = exchange.worker()
    assert await rest.run_until_idle() == 12 - sent
    await rest.aclose()
