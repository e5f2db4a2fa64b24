"""A claim/lease worker: claim due work with a lease, send it concurrently, record in batches.

Notice delivery and verification rounds are the same pipeline: claim a batch of due rows for
a lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the single writer), do slow I/O for
each with bounded concurrency, and record the outcomes a few per transaction, only for rows
still claimed by this worker. A worker that dies leaves its claims to expire; whoever claims
them next does the work again, so every step must be safe to repeat (the receiver's
idempotency, "only if still mine and not done").

The user supplies the steps (:class:`Steps`): its claim query, a prepare step (bodies built
from claimed keys, a chunk at a time), its send step, its record step, and what releasing an
unsent claim and being drained mean. This module owns the loop around them:

- :class:`Backlog` is the pure bookkeeping (how much to claim, when to record, when done);
- :func:`pump` drives it with asyncio: it claims and prepares ahead while earlier work is
  in flight, keeps at most ``concurrency`` sends running, records as outcomes complete (one
  recording at a time; outcomes that arrive meanwhile join the next one), and on the way out
  lets sends finish (on ``stop``) or cancels them (when cancelled), records what came back,
  and releases claims on work never sent.

Leases are not renewed: the user chooses a lease longer than a send's timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")  # a claimed key (e.g. a row id)
W = TypeVar("W")  # prepared work for one send
R = TypeVar("R")  # one send's outcome, as the record step takes it
_log = logging.getLogger(__name__)


class Steps(Protocol[K, W, R]):
    """What a pipeline supplies: its claim query, send step and record step."""

    async def claim(self, limit: int) -> Sequence[K]:
        """Claim up to ``limit`` due keys for a lease (its own transaction); oldest first."""
        ...

    async def prepare(self, keys: Sequence[K]) -> Sequence[W]:
        """The work for claimed keys (keys it drops stay claimed until their lease ends)."""
        ...

    def key(self, work: W) -> K:
        """The claimed key ``work`` was prepared from."""
        ...

    async def send(self, work: W) -> R:
        """Do the I/O for one piece of work; an exception is logged and loses the outcome."""
        ...

    async def record(self, outcomes: list[R]) -> None:
        """Record outcomes in one transaction, only where the claim is still this worker's."""
        ...

    async def release(self, keys: list[K]) -> None:
        """Give back claims on keys that were never sent (stopping early)."""
        ...

    async def drained(self) -> bool:
        """Nothing claimable and nothing of ours pending: True if the work is over (until
        idle), False to poll again (e.g. others still hold claims)."""
        ...


@dataclass(frozen=True)
class Pace:
    """How far a worker runs ahead. ``claim``: most keys one claim takes; ``ahead``: most
    prepared and not yet sent to the end; ``refill``: claim again once at most this many
    are ahead; ``concurrency``: sends in flight; ``prepare_chunk``: keys prepared (and their
    sends started) at a time; ``record_min``: record once this many outcomes wait (or
    nothing else is coming); ``linger``: seconds a small batch waits for more outcomes to
    share its transaction; ``poll``: idle wait between empty claims."""

    claim: int
    ahead: int
    refill: int
    concurrency: int
    prepare_chunk: int
    record_min: int = 1
    linger: float = 0.0
    poll: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.refill < self.ahead or min(self.claim, self.concurrency) < 1:
            raise ValueError(f"inconsistent pace {self}")
        if self.prepare_chunk < 1 or self.record_min < 1:
            raise ValueError(f"inconsistent pace {self}")


@dataclass
class Backlog(Generic[R]):
    """The pipeline's counts and decisions (pure): no I/O, no clock."""

    pace: Pace
    ahead: int = 0  # prepared, send not finished
    unrecorded: int = 0  # prepared, outcome neither recorded nor given up
    outcomes: list[R] = field(default_factory=list)

    def room(self) -> int:
        """How many keys to claim now (0: wait until sends make room)."""
        if self.ahead > self.pace.refill:
            return 0
        return min(self.pace.claim, self.pace.ahead - self.ahead)

    def prepared(self, n: int) -> None:
        self.ahead += n
        self.unrecorded += n

    def sent(self, outcome: list[R]) -> None:
        """One send ended: with its outcome (a one-item list) or without (empty)."""
        self.ahead -= 1
        if outcome:
            self.outcomes.extend(outcome)
        else:
            self.unrecorded -= 1

    def should_linger(self) -> bool:
        """Wait a moment so a few more outcomes share the next transaction?"""
        return (
            self.pace.linger > 0 and self.ahead > 0 and len(self.outcomes) < self.pace.concurrency
        )

    def ready(self, finishing: bool) -> bool:
        """Are there outcomes to record now?"""
        if not self.outcomes:
            return False
        return finishing or self.ahead == 0 or len(self.outcomes) >= self.pace.record_min

    def take(self, finishing: bool) -> list[R]:
        """The outcomes to record now (empty: not yet)."""
        if not self.ready(finishing):
            return []
        batch, self.outcomes = self.outcomes, []
        return batch

    def recorded(self, n: int) -> None:
        self.unrecorded -= n

    def settled(self) -> bool:
        """Every prepared piece of work recorded or given up."""
        return self.unrecorded <= 0 and not self.outcomes


class _Pump(Generic[K, W, R]):
    """One run of :func:`pump` (the shared state of its tasks)."""

    def __init__(
        self,
        steps: Steps[K, W, R],
        pace: Pace,
        stop: asyncio.Event | None,
        wake: asyncio.Event | None,
        log: logging.Logger,
    ) -> None:
        self.steps = steps
        self.pace = pace
        self.stop = stop
        self.wake = wake
        self.log = log
        self.backlog: Backlog[R] = Backlog(pace)
        self.sem = asyncio.Semaphore(pace.concurrency)
        self.sent_one = asyncio.Event()  # a send finished (room to claim more)
        self.recorded = asyncio.Event()  # outcomes were recorded (work may be due again)
        self.have_outcomes = asyncio.Event()
        self.finishing = False  # no more claims: the recorder stops once all is recorded
        self.senders: set[asyncio.Task[None]] = set()
        self.unsent: list[K] = []
        self.errors: list[BaseException] = []

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def send(self, work: W) -> None:
        outcome: list[R] = []
        try:
            async with self.sem:
                if self.stopping():
                    self.unsent.append(self.steps.key(work))
                    return
                outcome = [await self.steps.send(work)]
        except asyncio.CancelledError:  # cancelled run: the receiver dedups a resend
            self.unsent.append(self.steps.key(work))
            raise
        except Exception as exc:  # the claim expires; the next claimer sends again
            self.log.warning("send failed: %r", exc)
            self.errors.append(exc)
        finally:
            self.backlog.sent(outcome)
            if self.backlog.ready(self.finishing) or self.backlog.settled():
                self.have_outcomes.set()  # wake the recorder only when it has work or is done
            self.sent_one.set()

    async def recorder(self) -> None:
        backlog = self.backlog
        while True:
            batch = backlog.take(self.finishing)
            if not batch:
                if self.finishing and backlog.settled():
                    return
                self.have_outcomes.clear()
                await self.have_outcomes.wait()
                continue
            if backlog.should_linger():  # a few more completions may share the transaction
                await asyncio.sleep(self.pace.linger)
                batch += backlog.take(finishing=True)
            try:
                await self.steps.record(batch)
            except Exception as exc:  # the claims expire; the work is done again
                self.log.warning("recording %d outcomes failed: %s", len(batch), exc)
                self.errors.append(exc)
            backlog.recorded(len(batch))
            self.recorded.set()

    async def wait(self, event: asyncio.Event, idle: bool = False) -> None:
        """Wait for ``event`` or ``stop``; when ``idle``, also a wake-up or the poll."""
        event.clear()
        waiters = [asyncio.ensure_future(event.wait())]
        if self.stop is not None:
            waiters.append(asyncio.ensure_future(self.stop.wait()))
        if idle and self.wake is not None:
            waiters.append(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(
                waiters,
                timeout=self.pace.poll if idle else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for w in waiters:
                w.cancel()

    async def claim(self, limit: int) -> int:
        """Claim up to ``limit`` keys, prepare them a chunk at a time, start their sends."""
        if self.wake is not None:
            self.wake.clear()
        keys = list(await self.steps.claim(limit))
        step = self.pace.prepare_chunk
        for k in range(0, len(keys), step):  # the first sends need not wait for every body
            if self.stopping():
                self.unsent.extend(keys[k:])
                break
            prepared = await self.steps.prepare(keys[k : k + step])
            self.backlog.prepared(len(prepared))
            for work in prepared:
                task = asyncio.create_task(self.send(work))
                self.senders.add(task)
                task.add_done_callback(self.senders.discard)
        return len(keys)

    async def loop(self, claims: int | None, until_idle: bool) -> int:
        total = n_claims = 0
        while not self.stopping() and not (until_idle and self.errors):
            if claims is not None and n_claims >= claims:
                break
            room = self.backlog.room()
            if room == 0:
                await self.wait(self.sent_one)
                continue
            try:
                got = await self.claim(room)
            except Exception as exc:  # keep serving; a DB hiccup must not kill the loop
                if until_idle:
                    raise
                self.log.warning("claim round failed: %s", exc)
                await self.wait(self.recorded, idle=True)
                continue
            n_claims += 1
            total += got
            if got:
                continue
            if self.backlog.unrecorded > 0:  # what is in flight may be due again once recorded
                await self.wait(self.recorded, idle=not until_idle)
            elif until_idle and await self.steps.drained():
                break
            else:
                await self.wait(self.recorded, idle=True)
        return total

    async def finish(self, record_task: asyncio.Task[None], cancelled: bool) -> None:
        """Let sends end (cancel them if we were cancelled), record, release the unsent."""
        self.finishing = True
        if cancelled:
            for task in self.senders:
                task.cancel()
        if self.senders:
            await asyncio.gather(*list(self.senders), return_exceptions=True)
        self.have_outcomes.set()
        await record_task
        if self.unsent:
            try:
                await self.steps.release(self.unsent)
            except Exception as exc:  # the leases expire anyway
                self.log.warning("releasing %d claims failed: %s", len(self.unsent), exc)


async def pump(
    steps: Steps[K, W, R],
    pace: Pace,
    *,
    claims: int | None = None,
    until_idle: bool = False,
    stop: asyncio.Event | None = None,
    wake: asyncio.Event | None = None,
    log: logging.Logger = _log,
) -> int:
    """Claim, send and record until told to stop; return the number of keys claimed.

    Stops after ``claims`` claim queries (None: no limit); when ``until_idle`` and nothing
    is claimable, nothing is pending and ``steps.drained()``; or when ``stop`` is set. An
    error of a step stops an ``until_idle`` run (raised at the end, after the rest is
    recorded); a long-running one logs it and goes on. ``wake`` cuts an idle poll short.
    """
    run = _Pump(steps, pace, stop, wake, log)
    record_task = asyncio.create_task(run.recorder())
    cancelled = False
    try:
        total = await run.loop(claims, until_idle)
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        await run.finish(record_task, cancelled)
    if run.errors and until_idle:
        raise run.errors[0]
    return total


__all__ = ["Backlog", "Pace", "Steps", "pump"]
