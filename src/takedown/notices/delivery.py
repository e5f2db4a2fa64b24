"""The delivery worker: claims due notices from the outbox and POSTs them, signed.

Crash safety: a notice is claimed for a lease (``claimed_by`` / ``claimed_until``), sent,
and marked delivered only after a 2xx answer, in a transaction that also logs the attempt.
A worker that dies after the receiver said 2xx but before it recorded that leaves the
claim to expire; the notice is then sent again with the same ``Idempotency-Key``, which
the receiver recognises. At-least-once delivery plus the receiver's idempotency gives an
exactly-once effect.

Time comes from the clock: ``next_attempt_at`` and leases are clock times, so tests move a
SimClock instead of sleeping. Only the idle poll between empty rounds is a real wait.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, or_, select, update

from takedown.clock import Clock
from takedown.model import DeliveryState
from takedown.notices import signing
from takedown.notices.outbox import encode, notice_documents
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import DeliveryAttempt, Notice, Platform

ACTOR = "delivery-worker"


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
    with db.session() as session:
        candidates = (
            select(Notice.id)
            .join(Platform, Platform.id == Notice.platform_id)
            .where(_due(now), Platform.notice_url.is_not(None))
            .order_by(Notice.next_attempt_at, Notice.id)
            .limit(limit)
        )
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
    was re-claimed only logs its attempt: ``lost-claim``).
    """
    out: dict[int, str] = {}
    events: list[tuple[str, dict[str, object]]] = []
    with db.session() as session:
        for notice_id, outcome, rnd in sorted(outcomes, key=lambda o: o[0]):
            session.add(
                DeliveryAttempt(
                    notice_id=notice_id,
                    at=now,
                    status_code=outcome.status,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            state, event = _advance(session, notice_id, worker_id, outcome, now, policy, rnd)
            out[notice_id] = state
            if event is not None:
                events.append(event)
        # Notice rows first, the audit head last: the same lock order as every other
        # writer (e.g. an acknowledgement), so PostgreSQL cannot deadlock between them.
        session.flush()
        for type_, payload in events:
            audit.record(session, at=now, actor=ACTOR, type=type_, payload=payload)
    return {nid: out[nid] for nid, _o, _r in outcomes}


def _advance(
    session,  # type: ignore[no-untyped-def]
    notice_id: int,
    worker_id: str,
    outcome: Outcome,
    now: datetime,
    policy: RetryPolicy,
    rnd: float,
) -> tuple[str, tuple[str, dict[str, object]] | None]:
    """Move one claimed notice on; return its state and the event to record, if any."""
    notice = session.scalar(
        select(Notice).where(
            Notice.id == notice_id,
            Notice.claimed_by == worker_id,
            Notice.delivery_state == DeliveryState.PENDING.value,
        )
    )
    if notice is None:
        return "lost-claim", None
    attempts = notice.attempts + 1
    notice.attempts = attempts
    notice.claimed_by = None
    notice.claimed_until = None
    event: tuple[str, dict[str, object]] | None = None
    if outcome.ok:
        notice.delivery_state = DeliveryState.DELIVERED.value
        notice.delivered_at = now
        notice.next_attempt_at = None
        payload = {"notice": notice_id, "attempts": attempts, "status": outcome.status}
        event = ("notice.delivered", payload)
    elif attempts >= policy.max_attempts:
        notice.delivery_state = DeliveryState.FAILED.value
        notice.next_attempt_at = None
        event = (
            "notice.delivery_failed",
            {
                "notice": notice_id,
                "attempts": attempts,
                "status": outcome.status,
                "error": outcome.error,
            },
        )
    else:
        notice.next_attempt_at = now + policy.delay(attempts, rnd)
    return str(notice.delivery_state), event


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
        concurrency: int = 16,
        timeout: float = 10.0,
        lease: timedelta = timedelta(minutes=2),
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        poll_interval: float = 0.5,
        client: httpx.AsyncClient | None = None,
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
        """Claim a batch of due notices and deliver them; return how many were claimed."""
        now = self.clock.now()
        ids = await asyncio.to_thread(
            claim_due, self.db, self.worker_id, now, limit=self.batch, lease=self.lease
        )
        if not ids:
            return 0
        prepared = await asyncio.to_thread(prepare, self.db, ids)
        client = await self._ensure_client()
        sem = asyncio.Semaphore(self.concurrency)

        async def send(p: Prepared) -> Outcome:
            async with sem:
                return await self._post(client, p)

        outcomes = await asyncio.gather(*(send(p) for p in prepared))
        # One transaction records the whole batch (a crash before it only causes repeats,
        # which receivers recognise by Idempotency-Key).
        batch = [
            (p.notice_id, o, self.rng.random()) for p, o in zip(prepared, outcomes, strict=True)
        ]
        states = await asyncio.to_thread(
            record_outcomes, self.db, self.worker_id, batch, self.clock.now(), self.policy
        )
        for (_nid, outcome, _r), state in zip(batch, states.values(), strict=True):
            if state == DeliveryState.DELIVERED.value:
                self.delivered += 1
            elif not outcome.ok:
                self.failed_attempts += 1
        return len(ids)

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Deliver until nothing is due at the clock's current time; return notices claimed."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Loop until ``stop`` is set: deliver, and poll when idle."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    n = await self.run_once()
                except Exception as exc:  # keep serving; a DB hiccup must not kill the loop
                    import logging

                    logging.getLogger(__name__).warning("delivery round failed: %s", exc)
                    n = 0
                if n:
                    continue
                self._wake.clear()
                waiters = [asyncio.ensure_future(self._wake.wait())]
                waiters.append(asyncio.ensure_future(stop.wait()))
                _done, pending = await asyncio.wait(
                    waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
        finally:
            await self.aclose()
