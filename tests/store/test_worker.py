"""The claim/lease worker core: the pure Backlog, and pump over a fake in-memory store.

The fake store claims with leases on a hand-moved clock and records only where the claim
is still the worker's; the fake receiver counts sends per key. No database, no sockets.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from takedown.store.worker import Backlog, Pace, pump

PACE = Pace(claim=4, ahead=4, refill=2, concurrency=2, prepare_chunk=2)


@dataclass
class Row:
    owner: str | None = None
    until: float = 0.0
    done: bool = False


@dataclass
class Store:
    """Due rows with leases; ``now`` is moved by hand."""

    rows: dict[int, Row]
    now: float = 0.0
    received: Counter[int] = field(default_factory=Counter)  # sends per key
    recorded: Counter[int] = field(default_factory=Counter)  # results recorded per key
    transactions: list[int] = field(default_factory=list)  # outcomes per record call

    @classmethod
    def of(cls, n: int) -> Store:
        return cls({k: Row() for k in range(n)})

    def open(self) -> list[int]:
        return [k for k, r in self.rows.items() if not r.done]


class FakeSteps:
    """A worker's steps over a Store: claim with a lease, "send", record if still ours."""

    def __init__(self, store: Store, name: str, *, lease: float = 10.0) -> None:
        self.store = store
        self.name = name
        self.lease = lease
        self.gate: asyncio.Event | None = None  # sends wait for it when set up
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_record = False
        self.record_failures = 0
        self.fail_send: set[int] = set()
        self.released: list[int] = []
        self.drained_calls = 0
        self.still_busy = 0  # drained() answers False this many times first

    async def claim(self, limit: int) -> list[int]:
        s = self.store
        due = [k for k, r in s.rows.items() if not r.done and (r.owner is None or r.until <= s.now)]
        for k in due[:limit]:
            s.rows[k] = Row(self.name, s.now + self.lease)
        return due[:limit]

    async def prepare(self, keys: Sequence[int]) -> list[tuple[int, str]]:
        return [(k, f"body {k}") for k in keys]

    def key(self, work: tuple[int, str]) -> int:
        return work[0]

    async def send(self, work: tuple[int, str]) -> tuple[int, str]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            if work[0] in self.fail_send:
                raise ConnectionError("boom")
            self.store.received[work[0]] += 1
            return work[0], "ok"
        finally:
            self.in_flight -= 1

    async def record(self, outcomes: list[tuple[int, str]]) -> None:
        if self.fail_record:
            self.record_failures += 1
            raise RuntimeError("database went away")
        s = self.store
        s.transactions.append(len(outcomes))
        for k, _ in outcomes:
            row = s.rows[k]
            if row.owner == self.name and not row.done:  # only if still ours
                s.rows[k] = Row(None, 0.0, True)
                s.recorded[k] += 1

    async def release(self, keys: list[int]) -> None:
        self.released.extend(keys)
        for k in keys:
            if self.store.rows[k].owner == self.name:
                self.store.rows[k] = Row()

    async def drained(self) -> bool:
        self.drained_calls += 1
        if self.still_busy:
            self.still_busy -= 1
            return False
        return True


# ---------------------------------------------------------------- the pure bookkeeping


def test_backlog_claims_up_to_ahead_and_refills_at_the_low_water_mark() -> None:
    b: Backlog[int] = Backlog(Pace(claim=10, ahead=8, refill=3, concurrency=2, prepare_chunk=2))
    assert b.room() == 8
    b.prepared(8)
    assert b.room() == 0
    for _ in range(5):
        b.sent([1])
    assert b.ahead == 3 and b.room() == 5 and b.unrecorded == 8


def test_backlog_records_in_batches_of_record_min_unless_nothing_else_is_coming() -> None:
    pace = Pace(claim=4, ahead=4, refill=0, concurrency=4, prepare_chunk=4, record_min=3)
    b: Backlog[str] = Backlog(pace)
    b.prepared(4)
    b.sent(["a"])
    b.sent(["b"])
    assert b.take(finishing=False) == []  # two of three, two more to come
    assert b.take(finishing=True) == ["a", "b"]
    b.recorded(2)
    b.sent([])  # a send that gave up: nothing to record, nothing pending for it
    b.sent(["c"])
    assert b.ahead == 0 and b.take(finishing=False) == ["c"]  # nothing else is coming
    assert not b.settled()
    b.recorded(1)
    assert b.settled()


def test_backlog_lingers_only_for_a_small_batch_with_sends_in_flight() -> None:
    pace = Pace(claim=4, ahead=4, refill=0, concurrency=2, prepare_chunk=2, linger=0.01)
    b: Backlog[int] = Backlog(pace)
    b.prepared(3)
    b.sent([1])
    assert b.should_linger()
    b.sent([2])
    assert not b.should_linger()  # a full batch
    b.outcomes.clear()
    b.sent([3])
    assert not b.should_linger()  # nothing in flight
    assert not Backlog(PACE).should_linger()  # no linger configured


@pytest.mark.parametrize(
    "kw", [{"refill": 4}, {"refill": -1}, {"claim": 0}, {"concurrency": 0}, {"prepare_chunk": 0}]
)
def test_inconsistent_pace_is_refused(kw: dict[str, int]) -> None:
    args = {"claim": 4, "ahead": 4, "refill": 2, "concurrency": 2, "prepare_chunk": 2, **kw}
    with pytest.raises(ValueError):
        Pace(**args)


# ---------------------------------------------------------------- pump


async def test_until_idle_sends_and_records_each_key_once_within_the_limits() -> None:
    store = Store.of(23)
    steps = FakeSteps(store, "a")
    assert await pump(steps, PACE, until_idle=True) == 23
    assert store.open() == []
    assert store.received == Counter(range(23)) == store.recorded
    assert steps.most_in_flight <= PACE.concurrency
    assert sum(store.transactions) == 23


async def test_claims_limits_the_number_of_claim_queries() -> None:
    store = Store.of(10)
    assert await pump(FakeSteps(store, "a"), PACE, claims=1, until_idle=True) == 4
    assert len(store.open()) == 6


async def test_record_min_batches_the_transactions() -> None:
    store = Store.of(12)
    pace = Pace(claim=12, ahead=12, refill=0, concurrency=12, prepare_chunk=12, record_min=5)
    assert await pump(FakeSteps(store, "a"), pace, until_idle=True) == 12
    assert store.transactions[0] >= 5 and sum(store.transactions) == 12


async def test_stop_lets_sends_finish_and_releases_the_unsent() -> None:
    store = Store.of(4)
    steps = FakeSteps(store, "a")
    steps.gate = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(pump(steps, PACE, stop=stop))
    while steps.in_flight < 2:
        await asyncio.sleep(0)
    stop.set()
    steps.gate.set()
    assert await asyncio.wait_for(task, 5) == 4
    assert sorted(store.recorded) == [0, 1]  # the two in flight finished and were recorded
    assert sorted(steps.released) == [2, 3]  # the two waiting were given back
    assert all(r.owner is None for r in store.rows.values())


async def test_cancel_cancels_sends_and_gives_their_claims_back() -> None:
    store = Store.of(4)
    steps = FakeSteps(store, "a")
    steps.gate = asyncio.Event()
    task = asyncio.create_task(pump(steps, PACE))
    while steps.in_flight < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(steps.released) == [0, 1, 2, 3] and not store.recorded
    assert all(r.owner is None and not r.done for r in store.rows.values())


async def test_a_dead_worker_s_claims_are_taken_again_after_the_lease() -> None:
    store = Store.of(6)
    dead = FakeSteps(store, "dead", lease=10.0)
    dead.gate = asyncio.Event()  # never opens: the process dies mid-send
    dead.release = _no_release  # type: ignore[method-assign]  # kill -9 gives nothing back
    task = asyncio.create_task(pump(dead, PACE))
    while dead.in_flight < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    claimed = [k for k, r in store.rows.items() if r.owner == "dead"]
    assert len(claimed) == 4
    other = FakeSteps(store, "b")
    assert await pump(other, PACE, until_idle=True) == 2  # within the lease: only the rest
    store.now = 10.0  # the lease is over
    assert await pump(other, PACE, until_idle=True) == 4
    assert store.open() == [] and store.recorded == Counter(range(6))
    # a late answer from the dead worker changes nothing (no longer its claim)
    await dead.record([(k, "ok") for k in claimed])
    assert store.recorded == Counter(range(6))


async def _no_release(keys: list[int]) -> None:
    return None


async def test_until_idle_raises_a_recording_error_after_the_rest() -> None:
    store = Store.of(3)
    steps = FakeSteps(store, "a")
    steps.fail_record = True
    with pytest.raises(RuntimeError, match="database went away"):
        await pump(steps, PACE, until_idle=True)
    assert store.received == Counter(range(3))  # sent, not recorded: claims expire
    assert all(r.owner == "a" and not r.done for r in store.rows.values())


async def test_a_failing_send_loses_only_its_outcome() -> None:
    store = Store.of(4)
    steps = FakeSteps(store, "a")
    steps.fail_send = {2}
    with pytest.raises(ConnectionError):
        await pump(steps, PACE, until_idle=True)
    assert sorted(store.recorded) == [0, 1, 3]
    assert store.rows[2].owner == "a" and not store.rows[2].done  # its lease will expire


async def test_a_long_run_logs_errors_and_goes_on_until_stopped() -> None:
    store = Store.of(2)
    steps = FakeSteps(store, "a")
    steps.fail_record = True
    stop = asyncio.Event()
    task = asyncio.create_task(pump(steps, PACE, stop=stop))
    while not steps.record_failures:
        await asyncio.sleep(0.001)
    steps.fail_record = False
    store.now = 10.0  # leases over: the worker takes its own notices again
    for _ in range(2000):
        if store.open() == []:
            break
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert store.open() == [] and store.received == Counter({0: 2, 1: 2})


async def test_not_drained_polls_until_it_is_and_wake_cuts_the_poll_short() -> None:
    store = Store.of(1)
    steps = FakeSteps(store, "a")
    steps.still_busy = 2
    pace = Pace(claim=4, ahead=4, refill=2, concurrency=2, prepare_chunk=2, poll=30.0)
    wake = asyncio.Event()
    task = asyncio.create_task(pump(steps, pace, until_idle=True, wake=wake))
    for _ in range(5000):  # bounded; the 30 s poll would make the test time out
        if task.done():
            break
        wake.set()
        await asyncio.sleep(0.001)
    assert await asyncio.wait_for(task, 5) == 1
    assert steps.drained_calls == 3
