"""The delivery worker: claims due notices from the outbox and POSTs them, signed.

Crash safety: a notice is claimed for a lease (``claimed_by`` / ``claimed_until``), sent,
and marked delivered only after a 2xx answer, in a transaction that also logs the attempt.
A worker that dies after the receiver said 2xx but before it recorded that leaves the
claim to expire; the notice is then sent again with the same ``Idempotency-Key``, which
the receiver recognises. At-least-once delivery plus the receiver's idempotency gives an
exactly-once effect.

Time comes from the clock: ``next_attempt_at`` and leases are clock times, so tests move a
SimClock instead of sleeping. Only the idle poll between empty rounds is a real wait.

The worker is a pipeline, so database work overlaps with network I/O: it claims and
prepares the next notices (in a thread) while earlier ones are still being sent, keeps at
most ``concurrency`` POSTs in flight, and records outcomes as they complete, a few per
transaction (one recording at a time; outcomes that arrive meanwhile join the next one).
At most ``batch`` notices are claimed and not yet sent or in flight at any time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, bindparam, insert, or_, select, update

from takedown.clock import Clock
from takedown.model import DeliveryState
from takedown.notices import signing
from takedown.notices.outbox import encode, notice_documents
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import DeliveryAttempt, Notice, Platform

ACTOR = "delivery-worker"
CONCURRENCY = 16  # POSTs in flight per worker (the bench's baseline uses the same)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th failure waits base·2ⁿ⁻¹ (capped), of
    which the second half is random, so failed receivers are not hit in lock-step."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 25

    def delay(self, failures: int, rnd: float) -> timedelta:
        """Wait after ``failures`` (≥1) failed attempts; ``rnd`` uniform in [0, 1)."""
        span = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (failures - 1))
        return timedelta(seconds=span / 2 + rnd * span / 2)


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Prepared:
    notice_id: int
    url: str
    secret: str
    body: bytes


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return and_(
        Notice.delivery_state == DeliveryState.PENDING.value,
        Notice.next_attempt_at <= now,
        or_(Notice.claimed_until.is_(None), Notice.claimed_until <= now),
    )


def claim_due(
    db: Database, worker_id: str, now: datetime, *, limit: int, lease: timedelta
) -> list[int]:
    """Claim up to ``limit`` due notices for ``lease``; return their ids (oldest first).

    PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent workers take disjoint
    rows. SQLite: the write transaction (BEGIN IMMEDIATE) serialises claimers, and the
    claim is one UPDATE.
    """
    candidates = (
        select(Notice.id)
        .join(Platform, Platform.id == Notice.platform_id)
        .where(_due(now), Platform.notice_url.is_not(None))
        .order_by(Notice.next_attempt_at, Notice.id)
        .limit(limit)
    )
    # Look before taking the write lock: an idle poll must not queue behind (or hold up)
    # other writers. The claim below re-checks under the lock.
    with db.reading() as session:
        if session.scalar(candidates.limit(1)) is None:
            return []
    with db.session() as session:
        if db.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True, of=Notice)
        ids = list(session.scalars(candidates).all())
        if not ids:
            return []
        session.execute(
            update(Notice)
            .where(Notice.id.in_(ids))
            .values(claimed_by=worker_id, claimed_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        return ids


def prepare(db: Database, ids: Sequence[int]) -> list[Prepared]:
    """Build the bodies of the claimed notices (read-only, a few queries per batch)."""
    out = []
    with db.reading() as session:
        docs = notice_documents(session, ids)
        targets = dict(
            (nid, (url, secret))
            for nid, url, secret in session.execute(
                select(Notice.id, Platform.notice_url, Platform.webhook_secret)
                .join(Platform, Platform.id == Notice.platform_id)
                .where(Notice.id.in_(list(ids)))
            ).all()
        )
        for nid in ids:
            url, secret = targets.get(nid, (None, None))
            if nid in docs and url:
                out.append(Prepared(nid, url, secret or "", encode(docs[nid])))
    return out


def record_outcome(
    db: Database,
    notice_id: int,
    worker_id: str,
    outcome: Outcome,
    now: datetime,
    policy: RetryPolicy,
    rnd: float,
) -> str:
    """Log one attempt and move the notice on; return its delivery state afterwards."""
    return record_outcomes(db, worker_id, [(notice_id, outcome, rnd)], now, policy)[notice_id]


def record_outcomes(
    db: Database,
    worker_id: str,
    outcomes: Sequence[tuple[int, Outcome, float]],
    now: datetime,
    policy: RetryPolicy,
) -> dict[int, str]:
    """Log attempts and move the notices on, in one transaction; return each new state.

    Only the worker holding the claim changes a notice (a worker whose lease expired and
    was re-claimed only logs its attempt: ``lost-claim``). A few statements per call,
    whatever the number of outcomes, plus one audit event per delivered or failed notice.
    """
    if not outcomes:
        return {}
    ids = sorted({nid for nid, _o, _r in outcomes})
    out: list[str] = []
    with db.session() as session:
        # Notice rows first (locked in id order), the audit head last: the same lock order
        # as every other writer (e.g. an acknowledgement), so PostgreSQL cannot deadlock.
        held_q = (
            select(Notice.id, Notice.attempts)
            .where(
                Notice.id.in_(ids),
                Notice.claimed_by == worker_id,
                Notice.delivery_state == DeliveryState.PENDING.value,
            )
            .order_by(Notice.id)
        )
        if db.dialect == "postgresql":
            held_q = held_q.with_for_update(of=Notice)
        held = dict(session.execute(held_q).all())
        session.execute(
            insert(DeliveryAttempt),
            [
                {
                    "notice_id": nid,
                    "at": now,
                    "status_code": o.status,
                    "error": o.error,
                    "duration_ms": o.duration_ms,
                }
                for nid, o, _r in outcomes
            ],
        )
        changes: list[dict[str, object]] = []
        events: list[tuple[str, dict[str, object]]] = []
        for nid, outcome, rnd in outcomes:
            if nid not in held:  # not ours (or already moved on by an earlier outcome)
                out.append("lost-claim")
                continue
            attempts = held.pop(nid) + 1
            state, next_at, event = advance(nid, attempts, outcome, now, policy, rnd)
            out.append(state)
            changes.append(
                {
                    "b_id": nid,
                    "b_state": state,
                    "b_attempts": attempts,
                    "b_next": next_at,
                    "b_delivered": now if state == DeliveryState.DELIVERED.value else None,
                }
            )
            if event is not None:
                events.append(event)
        if changes:
            t = Notice.__table__
            session.execute(
                update(t)
                .where(t.c.id == bindparam("b_id"), t.c.claimed_by == worker_id)
                .values(
                    delivery_state=bindparam("b_state"),
                    attempts=bindparam("b_attempts"),
                    next_attempt_at=bindparam("b_next"),
                    delivered_at=bindparam("b_delivered"),
                    claimed_by=None,
                    claimed_until=None,
                ),
                changes,
            )
        audit.record_many(session, at=now, actor=ACTOR, events=events)
    result: dict[int, str] = {}
    for (nid, _o, _r), state in zip(outcomes, out, strict=True):
        if result.get(nid) in (None, "lost-claim"):
            result[nid] = state
    return result


def advance(
    notice_id: int,
    attempts: int,
    outcome: Outcome,
    now: datetime,
    policy: RetryPolicy,
    rnd: float,
) -> tuple[str, datetime | None, tuple[str, dict[str, object]] | None]:
    """The state after attempt number ``attempts`` (pure): (state, next attempt, event)."""
    if outcome.ok:
        payload = {"notice": notice_id, "attempts": attempts, "status": outcome.status}
        return DeliveryState.DELIVERED.value, None, ("notice.delivered", payload)
    if attempts >= policy.max_attempts:
        payload = {
            "notice": notice_id,
            "attempts": attempts,
            "status": outcome.status,
            "error": outcome.error,
        }
        return DeliveryState.FAILED.value, None, ("notice.delivery_failed", payload)
    return DeliveryState.PENDING.value, now + policy.delay(attempts, rnd), None


def release(db: Database, worker_id: str, ids: Sequence[int]) -> None:
    """Give up claims on notices this worker will not send (e.g. when stopping)."""
    if not ids:
        return
    with db.session() as session:
        session.execute(
            update(Notice)
            .where(Notice.id.in_(list(ids)), Notice.claimed_by == worker_id)
            .values(claimed_by=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class DeliveryWorker:
    """Delivers due notices: ``run_once`` is one claim-send-record round; ``run`` loops."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        worker_id: str | None = None,
        batch: int = 64,
        concurrency: int = CONCURRENCY,
        timeout: float = 10.0,
        lease: timedelta = timedelta(minutes=2),
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        poll_interval: float = 0.5,
        client: httpx.AsyncClient | None = None,
        record_linger: float = 0.005,
    ) -> None:
        self.db = db
        self.clock = clock
        self.worker_id = worker_id or worker_name()
        self.batch = batch
        self.concurrency = concurrency
        self.timeout = timeout
        self.lease = lease
        self.policy = policy or RetryPolicy()
        self.rng = random.Random(seed)
        self.poll_interval = poll_interval
        self.record_linger = record_linger
        self._client = client
        self._own_client = client is None
        self._wake = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0

    def wake(self) -> None:
        """Start the next round now (e.g. after notices were enqueued in-process)."""
        self._wake.set()

    async def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=self.concurrency * 2),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def _post(self, client: httpx.AsyncClient, p: Prepared) -> Outcome:
        t = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(p.secret, p.body, t),
            signing.IDEMPOTENCY_HEADER: str(p.notice_id),
            "User-Agent": "takedown-notices/1",
        }
        start = time.perf_counter()
        try:
            resp = await client.post(p.url, content=p.body, headers=headers, timeout=self.timeout)
            await resp.aread()
            return Outcome(resp.status_code, None, (time.perf_counter() - start) * 1000)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Outcome(None, error, (time.perf_counter() - start) * 1000)

    async def run_once(self) -> int:
        """Claim one batch of due notices and deliver it; return how many were claimed."""
        return await self._pump(claims=1, until_idle=True, stop=None)

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Deliver until nothing is due at the clock's current time; return notices claimed."""
        return await self._pump(claims=max_rounds, until_idle=True, stop=None)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Loop until ``stop`` is set: deliver, and poll when idle."""
        try:
            await self._pump(claims=None, until_idle=False, stop=stop or asyncio.Event())
        finally:
            await self.aclose()

    async def _pump(
        self, *, claims: int | None, until_idle: bool, stop: asyncio.Event | None
    ) -> int:
        """The pipeline: claim/prepare ahead, send with bounded concurrency, record in batches.

        Stops after ``claims`` claim queries (None: no limit), when nothing is due and
        nothing is in flight (``until_idle``), or when ``stop`` is set; then lets the POSTs
        in flight finish, records them, and releases claims on notices never sent.
        Returns the number of notices claimed.
        """
        client = await self._ensure_client()
        sem = asyncio.Semaphore(self.concurrency)
        sent_one = asyncio.Event()  # a POST finished (room to claim more)
        recorded = asyncio.Event()  # outcomes were recorded (notices may be due again)
        have_outcomes = asyncio.Event()
        ahead = 0  # claimed and prepared, not yet POSTed to the end
        unrecorded = 0  # claimed and prepared, outcome not yet recorded (nor released)
        buffer: list[tuple[int, Outcome, float]] = []
        unsent: list[int] = []
        finished = False  # no more claims: the recorder stops once everything is recorded
        senders: set[asyncio.Task[None]] = set()
        errors: list[BaseException] = []
        log = logging.getLogger(__name__)

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        async def send(p: Prepared) -> None:
            nonlocal ahead, unrecorded
            try:
                async with sem:
                    if stopping():
                        unsent.append(p.notice_id)
                        unrecorded -= 1
                        return
                    try:
                        outcome = await self._post(client, p)
                    except Exception as exc:  # never lose track of a claimed notice
                        outcome = Outcome(None, f"{type(exc).__name__}: {exc}", 0.0)
                buffer.append((p.notice_id, outcome, self.rng.random()))
                have_outcomes.set()
            finally:
                ahead -= 1
                sent_one.set()

        async def recorder() -> None:
            nonlocal unrecorded
            while True:
                if not buffer:
                    if finished and unrecorded <= 0:
                        return
                    have_outcomes.clear()
                    await have_outcomes.wait()
                    continue
                # a short linger lets a few completions share one transaction
                if len(buffer) < self.concurrency and ahead > 0 and self.record_linger > 0:
                    await asyncio.sleep(self.record_linger)
                batch = buffer[:]
                del buffer[:]
                try:
                    states = await asyncio.to_thread(
                        record_outcomes,
                        self.db,
                        self.worker_id,
                        batch,
                        self.clock.now(),
                        self.policy,
                    )
                except Exception as exc:  # the claims expire; receivers dedup the resend
                    log.warning("recording %d delivery outcomes failed: %s", len(batch), exc)
                    errors.append(exc)
                    states = {}
                for nid, outcome, _r in batch:
                    if states.get(nid) == DeliveryState.DELIVERED.value:
                        self.delivered += 1
                    elif not outcome.ok:
                        self.failed_attempts += 1
                unrecorded -= len(batch)
                recorded.set()

        async def wait(event: asyncio.Event, idle: bool = False) -> None:
            """Wait for ``event`` or ``stop``; when ``idle``, also a wake-up or the poll."""
            event.clear()
            waiters = [asyncio.ensure_future(event.wait())]
            if stop is not None:
                waiters.append(asyncio.ensure_future(stop.wait()))
            if idle:
                waiters.append(asyncio.ensure_future(self._wake.wait()))
            try:
                await asyncio.wait(
                    waiters,
                    timeout=self.poll_interval if idle else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for w in waiters:
                    w.cancel()

        record_task = asyncio.create_task(recorder())
        total = 0
        n_claims = 0
        # claim more once this few are left to send (always room for one more claim)
        low_water = min(self.batch - 1, max(self.concurrency, self.batch // 2))
        try:
            while not stopping() and not (until_idle and errors):
                if claims is not None and n_claims >= claims:
                    break
                if ahead > low_water:
                    await wait(sent_one)
                    continue
                self._wake.clear()
                try:
                    ids = await asyncio.to_thread(
                        claim_due,
                        self.db,
                        self.worker_id,
                        self.clock.now(),
                        limit=self.batch - ahead,
                        lease=self.lease,
                    )
                    n_claims += 1
                    total += len(ids)
                    # build bodies a few at a time, so the first POSTs need not wait for all
                    for k in range(0, len(ids), self.concurrency):
                        if stopping():
                            unsent.extend(ids[k:])
                            break
                        chunk = ids[k : k + self.concurrency]
                        prepared = await asyncio.to_thread(prepare, self.db, chunk)
                        ahead += len(prepared)
                        unrecorded += len(prepared)
                        for p in prepared:
                            task = asyncio.create_task(send(p))
                            senders.add(task)
                            task.add_done_callback(senders.discard)
                except Exception as exc:  # keep serving; a DB hiccup must not kill the loop
                    if until_idle:
                        raise
                    log.warning("delivery round failed: %s", exc)
                    await wait(recorded, idle=True)
                    continue
                if ids:
                    continue
                if unrecorded > 0:  # what is in flight may be due again once recorded
                    await wait(recorded, idle=not until_idle)
                elif until_idle:
                    break
                else:
                    await wait(recorded, idle=True)
        finally:
            finished = True
            if senders:
                await asyncio.gather(*list(senders), return_exceptions=True)
            have_outcomes.set()
            await record_task
            if unsent:
                try:
                    await asyncio.to_thread(release, self.db, self.worker_id, unsent)
                except Exception as exc:  # the leases expire anyway
                    log.warning("releasing %d claims failed: %s", len(unsent), exc)
        if errors and until_idle:
            raise errors[0]
        return total
