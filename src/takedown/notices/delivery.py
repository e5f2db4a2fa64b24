"""The delivery worker: claims due notices from the outbox and POSTs them, signed.

Crash safety: a notice is claimed for a lease (``claimed_by`` / ``claimed_until``), sent,
and marked delivered only after a 2xx answer, in a transaction that also logs the attempt.
A worker that dies after the receiver said 2xx but before it recorded that leaves the
claim to expire; the notice is then sent again with the same ``Idempotency-Key``, which
the receiver recognises. At-least-once delivery plus the receiver's idempotency gives an
exactly-once effect.

Time comes from the clock: ``next_attempt_at`` and leases are clock times, so tests move a
SimClock instead of sleeping. Only the idle poll between empty rounds is a real wait.

The worker is a pipeline (:mod:`takedown.store.worker`), so database work overlaps with
network I/O: it claims and prepares the next notices (in a thread) while earlier ones are
still being sent, keeps at most ``concurrency`` POSTs in flight, and records outcomes as
they complete, a few per transaction (one recording at a time; outcomes that arrive
meanwhile join the next one). At most ``batch`` notices are claimed and not yet sent or
in flight at any time. This module supplies the steps: ``claim_due``, ``prepare``, the
signed POST, ``record_outcomes`` and ``release``.
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
from takedown.store.worker import Pace, pump

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
        out, changes, events = _moves(held, outcomes, now, policy)
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


def _moves(
    held: dict[int, int],
    outcomes: Sequence[tuple[int, Outcome, float]],
    now: datetime,
    policy: RetryPolicy,
) -> tuple[list[str], list[dict[str, object]], list[tuple[str, dict[str, object]]]]:
    """For outcomes in order (pure; ``held``: attempts so far of the notices still ours,
    consumed): each one's state, the row changes, the audit events."""
    out: list[str] = []
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
    return out, changes, events


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


def requeue(db: Database, notice_id: int, *, now: datetime, actor: str) -> None:
    """Send a notice again: it goes back into the outbox as due now, and the delivery
    worker sends it the usual way (same body, same ``Idempotency-Key``). For a notice that
    failed, or was delivered but not acknowledged; one already waiting in the outbox is a
    Conflict. Its attempts so far are kept, so a failed notice gets one more attempt."""
    from takedown.errors import Conflict, NotFound

    with db.session() as session:
        n = session.get(Notice, notice_id)
        if n is None:
            raise NotFound(f"no notice {notice_id}", where="ID")
        if n.delivery_state == DeliveryState.PENDING.value:
            raise Conflict(f"notice {notice_id} is already waiting in the outbox", where="ID")
        previous = n.delivery_state
        n.delivery_state, n.next_attempt_at = DeliveryState.PENDING.value, now
        n.claimed_by = n.claimed_until = None
        audit.record(
            session,
            at=now,
            actor=actor,
            type="notice.requeued",
            payload={"notice": notice_id, "was": previous, "attempts": n.attempts},
        )


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

    def pace(self) -> Pace:
        """The pipeline's shape: at most ``batch`` claimed and not yet sent; claim more once
        this few are left to send (always room for one more claim); bodies built
        ``concurrency`` at a time; a short linger lets a few outcomes share a transaction."""
        low_water = min(self.batch - 1, max(self.concurrency, self.batch // 2))
        return Pace(
            claim=self.batch,
            ahead=self.batch,
            refill=low_water,
            concurrency=self.concurrency,
            prepare_chunk=self.concurrency,
            linger=self.record_linger,
            poll=self.poll_interval,
        )

    async def _pump(
        self, *, claims: int | None, until_idle: bool, stop: asyncio.Event | None
    ) -> int:
        """Claim/prepare ahead, POST with bounded concurrency, record in batches
        (:func:`takedown.store.worker.pump`); return the number of notices claimed."""
        steps = _DeliverySteps(self, await self._ensure_client())
        return await pump(
            steps,
            self.pace(),
            claims=claims,
            until_idle=until_idle,
            stop=stop,
            wake=self._wake,
            log=logging.getLogger(__name__),
        )


class _DeliverySteps:
    """The delivery worker's steps for :func:`takedown.store.worker.pump`."""

    def __init__(self, worker: DeliveryWorker, client: httpx.AsyncClient) -> None:
        self.w = worker
        self.client = client

    async def claim(self, limit: int) -> list[int]:
        w = self.w
        now = w.clock.now()
        return await asyncio.to_thread(
            claim_due, w.db, w.worker_id, now, limit=limit, lease=w.lease
        )

    async def prepare(self, ids: Sequence[int]) -> list[Prepared]:
        return await asyncio.to_thread(prepare, self.w.db, ids)

    def key(self, work: Prepared) -> int:
        return work.notice_id

    async def send(self, p: Prepared) -> tuple[int, Outcome, float]:
        try:
            outcome = await self.w._post(self.client, p)
        except Exception as exc:  # never lose track of a claimed notice
            outcome = Outcome(None, f"{type(exc).__name__}: {exc}", 0.0)
        return p.notice_id, outcome, self.w.rng.random()

    async def record(self, batch: list[tuple[int, Outcome, float]]) -> None:
        w = self.w
        states: dict[int, str] = {}
        try:
            states = await asyncio.to_thread(
                record_outcomes, w.db, w.worker_id, batch, w.clock.now(), w.policy
            )
        finally:  # a failed recording still counts the failed attempts
            for nid, outcome, _r in batch:
                if states.get(nid) == DeliveryState.DELIVERED.value:
                    w.delivered += 1
                elif not outcome.ok:
                    w.failed_attempts += 1

    async def release(self, ids: list[int]) -> None:
        await asyncio.to_thread(release, self.w.db, self.w.worker_id, ids)

    async def drained(self) -> bool:
        return True
