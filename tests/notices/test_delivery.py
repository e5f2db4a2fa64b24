"""The delivery worker against a real simulator over loopback: success, faults, retries.

Backoff is driven by a SimClock (the worker takes ``now`` from it); nothing sleeps to let
time pass. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from takedown.clock import SimClock
from takedown.notices import outbox
from takedown.notices.delivery import (
    DeliveryWorker,
    Outcome,
    RetryPolicy,
    claim_due,
    record_outcome,
)
from takedown.sim.behaviour import Behaviour
from takedown.sim.server import SimPlatform, create_sim_app
from takedown.store.db import Database
from takedown.store.schema import DeliveryAttempt, Event, Notice
from takedown.web.app import create_app

from .support import START, ServerThread, add_items, free_port, make_platform


@dataclass
class Exchange:
    db: Database
    clock: SimClock
    sim: SimPlatform
    sim_url: str
    sim_port: int
    api: ServerThread
    secret: str
    token: str
    pid: int

    def worker(self, **kw: object) -> DeliveryWorker:
        kw.setdefault("timeout", 5.0)
        kw.setdefault("seed", 1)
        return DeliveryWorker(self.db, self.clock, **kw)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.sim_url}/_sim/stats").json()

    def faults(self, status: int | None = None, delay_ms: int = 0) -> None:
        httpx.post(f"{self.sim_url}/_sim/faults", json={"status": status, "delay_ms": delay_ms})


def wait_for(predicate, what: str, limit: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll an effect that another thread completes (bounded; not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def exchange(db: Database) -> Iterator[Exchange]:
    clock = SimClock(START)
    port = free_port()
    pid, secret, token = make_platform(db, notice_url=f"http://127.0.0.1:{port}/notices")
    with ServerThread(create_app(db, clock=clock)) as api:
        sim = SimPlatform(Behaviour(), clock, secret=secret, api=api.url, token=token)
        ex = Exchange(db, clock, sim, f"http://127.0.0.1:{port}", port, api, secret, token, pid)
        with ServerThread(create_sim_app(sim), port=port):
            yield ex


def states(db: Database) -> list[tuple[int, str, int]]:
    with db.reading() as s:
        return [
            (n.id, n.delivery_state, n.attempts)
            for n in s.scalars(select(Notice).order_by(Notice.id))
        ]


def attempts(db: Database, notice_id: int) -> list[int | None]:
    with db.reading() as s:
        return list(
            s.scalars(
                select(DeliveryAttempt.status_code)
                .where(DeliveryAttempt.notice_id == notice_id)
                .order_by(DeliveryAttempt.id)
            )
        )


async def test_delivered_signed_and_acknowledged(exchange: Exchange) -> None:
    ids = add_items(exchange.db, exchange.pid, 7)
    [res] = outbox.send(exchange.db, now=START, actor="t", max_items=3)
    assert len(res.notices) == 3
    worker = exchange.worker()
    assert await worker.run_until_idle() == 3
    assert [s for _, s, _ in states(exchange.db)] == ["delivered"] * 3
    stats = exchange.stats()
    assert stats["accepted"] == 3 and stats["duplicates"] == 0 and stats["bad_signature"] == 0
    assert stats["items"] == len(ids)
    wait_for(lambda: exchange.stats()["acks_sent"] == 3, "acks")
    with exchange.db.reading() as s:
        acked = list(s.scalars(select(Notice.acknowledged_at)))
        types = list(s.scalars(select(Event.type)))
    assert acked == [START] * 3
    assert types.count("notice.issued") == 3
    assert types.count("notice.delivered") == 3
    assert types.count("notice.acknowledged") == 3
    # nothing left to do, and a second round sends nothing again
    assert await worker.run_until_idle() == 0
    assert exchange.stats()["received"] == 3


async def test_500_is_retried_with_backoff_until_it_recovers(exchange: Exchange) -> None:
    add_items(exchange.db, exchange.pid, 2)
    [res] = outbox.send(exchange.db, now=START, actor="t")
    nid = res.notices[0]
    policy = RetryPolicy(base=timedelta(seconds=30))
    worker = exchange.worker(policy=policy)
    exchange.faults(status=500)
    assert await worker.run_once() == 1
    with exchange.db.reading() as s:
        n = s.get(Notice, nid)
        first_retry = n.next_attempt_at
    assert n.delivery_state == "pending" and n.attempts == 1 and n.claimed_by is None
    assert START + timedelta(seconds=15) <= first_retry <= START + timedelta(seconds=30)
    # not due yet: nothing is sent however often the worker runs
    assert await worker.run_until_idle() == 0
    exchange.clock.set(first_retry)
    assert await worker.run_once() == 1  # still failing: the wait doubles
    with exchange.db.reading() as s:
        second_retry = s.get(Notice, nid).next_attempt_at
    assert (
        first_retry + timedelta(seconds=30) <= second_retry <= first_retry + timedelta(seconds=60)
    )
    exchange.faults(status=None)
    exchange.clock.set(second_retry)
    assert await worker.run_until_idle() == 1
    assert attempts(exchange.db, nid) == [500, 500, 200]
    assert states(exchange.db) == [(nid, "delivered", 3)]
    assert exchange.stats()["accepted"] == 1


async def test_endpoint_down_then_up(db: Database) -> None:
    clock = SimClock(START)
    port = free_port()
    pid, secret, _token = make_platform(db, notice_url=f"http://127.0.0.1:{port}/notices")
    add_items(db, pid, 3)
    [res] = outbox.send(db, now=START, actor="t")
    worker = DeliveryWorker(db, clock, timeout=2.0, seed=3)
    assert await worker.run_until_idle() == 1  # connection refused
    with db.reading() as s:
        n = s.get(Notice, res.notices[0])
        retry_at = n.next_attempt_at
        [error] = list(s.scalars(select(DeliveryAttempt.error)))
    assert n.delivery_state == "pending" and "Connect" in error
    sim = SimPlatform(Behaviour(), clock, secret=secret)
    with ServerThread(create_sim_app(sim), port=port):
        clock.set(retry_at)
        assert await worker.run_until_idle() == 1
        assert httpx.get(f"http://127.0.0.1:{port}/_sim/stats").json()["accepted"] == 1
    assert attempts(db, res.notices[0]) == [None, 200]
    await worker.aclose()


async def test_slow_endpoint_times_out_then_duplicate_is_not_acted_on_twice(
    exchange: Exchange,
) -> None:
    ids = add_items(exchange.db, exchange.pid, 2)
    [res] = outbox.send(exchange.db, now=START, actor="t")
    nid = res.notices[0]
    worker = exchange.worker(timeout=0.3)
    exchange.faults(delay_ms=1500)
    await worker.run_once()
    with exchange.db.reading() as s:
        n = s.get(Notice, nid)
    assert n.delivery_state == "pending"
    assert attempts(exchange.db, nid) == [None]
    # the slow receiver still takes the notice in, after its delay
    wait_for(lambda: exchange.stats()["accepted"] == 1, "slow receipt")
    exchange.faults(delay_ms=0)
    exchange.clock.set(n.next_attempt_at)
    assert await worker.run_until_idle() == 1
    assert states(exchange.db) == [(nid, "delivered", 2)]
    stats = exchange.stats()
    assert stats["accepted"] == 1 and stats["duplicates"] == 1 and stats["items"] == len(ids)
    receipts = httpx.get(f"{exchange.sim_url}/_sim/notices").json()
    assert receipts[str(nid)]["receipts"] == 2


async def test_gives_up_after_the_retry_budget(exchange: Exchange) -> None:
    add_items(exchange.db, exchange.pid, 1)
    [res] = outbox.send(exchange.db, now=START, actor="t")
    worker = exchange.worker(policy=RetryPolicy(max_attempts=3))
    exchange.faults(status=503)
    for _ in range(3):
        await worker.run_until_idle()
        exchange.clock.advance(timedelta(hours=2))
    assert states(exchange.db) == [(res.notices[0], "failed", 3)]
    with exchange.db.reading() as s:
        assert "notice.delivery_failed" in list(s.scalars(select(Event.type)))
    assert await worker.run_until_idle() == 0


async def test_wrong_secret_is_refused_and_retried(exchange: Exchange) -> None:
    add_items(exchange.db, exchange.pid, 1)
    [res] = outbox.send(exchange.db, now=START, actor="t")
    exchange.sim.secret = "not-the-platform-secret"
    await exchange.worker().run_once()
    assert attempts(exchange.db, res.notices[0]) == [401]
    assert exchange.stats()["bad_signature"] == 1 and exchange.stats()["items"] == 0


def test_claims_are_exclusive_and_leases_expire(db: Database) -> None:
    pid, *_ = make_platform(db)
    add_items(db, pid, 4)
    outbox.send(db, now=START, actor="t", max_items=1)
    lease = timedelta(minutes=2)
    a = claim_due(db, "a", START, limit=3, lease=lease)
    b = claim_due(db, "b", START, limit=3, lease=lease)
    assert len(a) == 3 and len(b) == 1 and not set(a) & set(b)
    assert claim_due(db, "c", START + timedelta(minutes=1), limit=10, lease=lease) == []
    later = START + lease
    c = claim_due(db, "c", later, limit=10, lease=lease)
    assert sorted(c) == sorted(a + b)
    # "a" lost its claim: its late 2xx is logged but does not mark the notice
    ok = Outcome(200, None, 1.0)
    assert record_outcome(db, a[0], "a", ok, later, RetryPolicy(), 0.5) == "lost-claim"
    assert record_outcome(db, a[0], "c", ok, later, RetryPolicy(), 0.5) == "delivered"
    assert len(attempts(db, a[0])) == 2


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base=timedelta(seconds=10), cap=timedelta(minutes=5))
    for n in range(1, 20):
        lo, hi = policy.delay(n, 0.0), policy.delay(n, 0.999999)
        span = min(300, 10 * 2 ** (n - 1))
        assert lo == timedelta(seconds=span / 2)
        assert timedelta(seconds=span / 2) <= hi <= timedelta(seconds=span)
