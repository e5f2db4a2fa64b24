"""Check rounds: create a round and its tasks, claim batches, probe, record checks.

A round is the set of items to check from one vantage point. Its tasks live in
``check_tasks``; a runner claims a batch (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite:
one writer at a time under ``BEGIN IMMEDIATE``) with a lease, probes it, and writes each
check in the same transaction that marks its task done (only if the task is still its
own and not done), so a task yields at most one check. The items projection changes in
that same transaction (``ledger.apply_checks``).

An interrupted run leaves tasks unfinished: a run started later resumes the open round
of its vantage point. Claims of a process that is gone (same host, dead pid) are released
at once; claims of other hosts when their lease expires. Leases are operational and run
on the process's real clock; check times (``at``) come from the domain clock.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, insert, literal, select, text, update

from takedown import ledger
from takedown.clock import Clock, SystemClock
from takedown.media import store as media_store
from takedown.media.hashing import MediaHash
from takedown.media.matcher import MediaMatcher
from takedown.model import ItemState, Verdict
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Check, CheckRound, CheckTask, Item, Platform
from takedown.store.worker import Pace, pump
from takedown.verify.probe import Prober, ProbeResult, ProbeSettings, Route
from takedown.verify.vantage import LOCAL, Vantage

_Task = tuple[int, int, str]  # task id, item id, target URL
_Result = tuple[int, int, ProbeResult, datetime]  # task id, item id, result, at
_FAILED = (Verdict.UNREACHABLE, Verdict.ERROR)


def worker_id() -> str:
    """``host:pid:nonce``: who holds a claim (the pid lets a restart free a dead one's)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class RunOptions:
    vantage: Vantage = LOCAL
    platform: str | None = None
    only_open: bool = False
    states: tuple[str, ...] = ()  # only items in these projection states (e.g. ("claimed",))
    settings: ProbeSettings = field(default_factory=ProbeSettings)
    connect_to: dict[str, Route] = field(default_factory=dict)
    only_loopback: bool = False
    verify_tls: Any = True
    batch: int = 200
    lease_s: float = 120.0
    flush_every: int = 200
    poll_s: float = 0.2
    worker: bool = False  # join the open round; never create one unless none is open
    actor: str = "verify"


@dataclass
class RunSummary:
    round_id: int
    resumed: bool
    tasks: int  # tasks in the round
    checked: int = 0  # checks this process wrote
    verdicts: collections.Counter[str] = field(default_factory=collections.Counter)
    transitions: collections.Counter[str] = field(default_factory=collections.Counter)
    reopened: int = 0
    finished: bool = False
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round_id,
            "resumed": self.resumed,
            "tasks": self.tasks,
            "checked": self.checked,
            "verdicts": dict(self.verdicts),
            "transitions": dict(self.transitions),
            "reopened": self.reopened,
            "finished": self.finished,
            "elapsed_s": round(self.elapsed_s, 3),
            "checks_per_s": round(self.checked / self.elapsed_s, 1) if self.elapsed_s else None,
        }


# ---------------------------------------------------------------- database steps (sync)


def _lock_rounds(session: Any) -> None:
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(724011)"))
    # SQLite: the write transaction (BEGIN IMMEDIATE) already serialises us.


def _vantage_cond(vantage: Vantage) -> Any:
    if vantage.id is None:
        return CheckRound.vantage_id.is_(None)
    return CheckRound.vantage_id == vantage.id


def open_round(db: Database, opts: RunOptions, now: datetime) -> tuple[int, bool, int]:
    """The open round of the vantage point, or a new one with its tasks.

    Returns (round id, resumed, number of tasks).
    """
    with db.session() as session:
        _lock_rounds(session)
        rid = session.scalar(
            select(CheckRound.id)
            .where(_vantage_cond(opts.vantage), CheckRound.finished_at.is_(None))
            .order_by(CheckRound.id)
            .limit(1)
        )
        if rid is not None:
            n = session.scalar(select(func.count()).where(CheckTask.round_id == rid))
            return rid, True, int(n or 0)
        cr = CheckRound(vantage_id=opts.vantage.id, started_at=now)
        session.add(cr)
        session.flush()
        conds = [Item.kind == "url", Item.delisted_at.is_(None), Item.listed_at <= now]
        if opts.platform is not None:
            pid = session.scalar(select(Platform.id).where(Platform.slug == opts.platform))
            if pid is None:
                from takedown.errors import NotFound

                raise NotFound(f"unknown platform {opts.platform!r}", where="--platform")
            conds.append(Item.platform_id == pid)
        if opts.only_open:
            conds.append(Item.state.in_([ItemState.OPEN.value, ItemState.CLAIMED.value]))
        if opts.states:
            conds.append(Item.state.in_(list(opts.states)))
        # tasks in item order, so that claims (oldest task first) go through the register
        # in order whatever plan the database picks
        sel = (
            select(literal(cr.id, Integer).label("round_id"), Item.id)
            .where(*conds)
            .order_by(Item.id)
        )
        result = session.execute(insert(CheckTask).from_select(["round_id", "item_id"], sel))
        n = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else None
        if n is None:
            n = session.scalar(select(func.count()).where(CheckTask.round_id == cr.id)) or 0
        audit.record(
            session,
            at=now,
            actor=opts.actor,
            type="verify.round_started",
            payload={
                "round": cr.id,
                "vantage": opts.vantage.name,
                "platform": opts.platform,
                "only_open": opts.only_open,
                "tasks": n,
            },
        )
        return cr.id, False, int(n)


def claim(
    db: Database, round_id: int, worker: str, n: int, lease_now: datetime, lease_until: datetime
) -> list[tuple[int, int, str]]:
    """Claim up to ``n`` due tasks: (task id, item id, target URL)."""
    with db.session() as session:
        pg = session.bind.dialect.name == "postgresql"
        lock = " FOR UPDATE SKIP LOCKED" if pg else ""
        bind = CheckTask.__table__.c.claimed_until.type
        dialect = session.bind.dialect
        rows = session.execute(
            text(
                "UPDATE check_tasks SET claimed_by = :w, claimed_until = :until "
                "WHERE id IN (SELECT id FROM check_tasks WHERE round_id = :r "
                "AND done_at IS NULL AND (claimed_until IS NULL OR claimed_until < :now) "
                f"ORDER BY id LIMIT :n{lock}) RETURNING id, item_id"
            ),
            {
                "w": worker,
                "until": bind.process_bind_param(lease_until, dialect),
                "now": bind.process_bind_param(lease_now, dialect),
                "r": round_id,
                "n": n,
            },
        ).all()
        if not rows:
            return []
        rows.sort()  # RETURNING promises no order; the oldest task first
        targets = dict(
            session.execute(
                select(Item.id, Item.target).where(Item.id.in_([r[1] for r in rows]))
            ).all()
        )
        return [(tid, iid, targets[iid]) for tid, iid in rows]


def record(
    db: Database,
    round_id: int,
    worker: str,
    vantage: Vantage,
    results: list[tuple[int, int, ProbeResult, datetime]],
    actor: str,
    matcher: MediaMatcher | None = None,
) -> tuple[int, list[ledger.Transition]]:
    """Write the checks of tasks still claimed by ``worker``; mark them done; project.
    With ``matcher``: an image answer that is another listed item's media is recorded as
    a re-upload of that item."""
    if not results:
        return 0, []
    with db.session() as session:
        done_at = max(r[3] for r in results)
        mine = set(
            session.scalars(
                update(CheckTask)
                .where(
                    CheckTask.id.in_([r[0] for r in results]),
                    CheckTask.done_at.is_(None),
                    CheckTask.claimed_by == worker,
                )
                .values(done_at=done_at)
                .returning(CheckTask.id)
            ).all()
        )
        rows = [
            {
                "item_id": iid,
                "vantage_id": vantage.id,
                "round_id": round_id,
                "at": at,
                "verdict": res.verdict.value,
                "status": res.status,
                "digest": res.digest,
                "latency_ms": round(res.latency_ms, 3),
                "error": res.reason if res.verdict in _FAILED else None,
                "media_pdq": res.pdq,
                "media_quality": res.pdq_quality,
            }
            for tid, iid, res, at in results
            if tid in mine
        ]
        if not rows:
            return 0, []
        session.execute(insert(Check), rows)
        if matcher is not None:
            _record_reuploads(session, matcher, results, mine, actor)
        transitions = ledger.apply_checks(
            session,
            [(r["item_id"], r["verdict"], r["at"]) for r in rows],
            in_country=vantage.in_country,
        )
        verdicts = collections.Counter(r["verdict"] for r in rows)
        audit.record(
            session,
            at=done_at,
            actor=actor,
            type="verify.checks",
            payload={
                "round": round_id,
                "vantage": vantage.name,
                "checks": len(rows),
                "verdicts": dict(verdicts),
                "transitions": [[t.item_id, t.old, t.new] for t in transitions],
            },
        )
        return len(rows), transitions


def _record_reuploads(
    session: Any,
    matcher: MediaMatcher,
    results: list[tuple[int, int, ProbeResult, datetime]],
    mine: set[int],
    actor: str,
) -> None:
    targets = dict(session.execute(select(Item.id, Item.target).where(
        Item.id.in_([iid for tid, iid, res, _ in results if tid in mine and res.pdq])))
                   .all())  # fmt: skip
    for tid, iid, res, at in results:
        if tid not in mine or res.pdq is None or res.verdict != Verdict.AVAILABLE:
            continue
        found = matcher.match(res.pdq, res.pdq_quality, res.digest)
        others = [m for m in found if m.item_id != iid]
        if others:
            hashed = MediaHash("image", res.digest or "", res.body_bytes, res.pdq, res.pdq_quality)
            media_store.record_found(session, others, url=targets[iid], hashed=hashed,
                                     found_by="probe", now=at, actor=actor)  # fmt: skip


def release_dead_claims(db: Database, round_id: int) -> int:
    """Free undone tasks held by processes of this host that no longer exist."""
    host = socket.gethostname()
    with db.session() as session:
        owners = session.scalars(
            select(CheckTask.claimed_by)
            .where(
                CheckTask.round_id == round_id,
                CheckTask.done_at.is_(None),
                CheckTask.claimed_by.is_not(None),
            )
            .distinct()
        ).all()
        dead = []
        for owner in owners:
            h, _, rest = owner.partition(":")
            pid_text = rest.partition(":")[0]
            if h == host and pid_text.isdigit() and not _alive(int(pid_text)):
                dead.append(owner)
        if not dead:
            return 0
        res = session.execute(
            update(CheckTask)
            .where(
                CheckTask.round_id == round_id,
                CheckTask.done_at.is_(None),
                CheckTask.claimed_by.in_(dead),
            )
            .values(claimed_by=None, claimed_until=None)
        )
        return int(res.rowcount or 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_own(db: Database, round_id: int, worker: str) -> None:
    """Give back this process's undone claims (after an interruption)."""
    with db.session() as session:
        session.execute(
            update(CheckTask)
            .where(
                CheckTask.round_id == round_id,
                CheckTask.done_at.is_(None),
                CheckTask.claimed_by == worker,
            )
            .values(claimed_by=None, claimed_until=None)
        )


def undone(db: Database, round_id: int) -> int:
    with db.reading() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    CheckTask.round_id == round_id, CheckTask.done_at.is_(None)
                )
            )
            or 0
        )


def finish_round(db: Database, round_id: int, now: datetime, actor: str) -> bool:
    """Close the round if every task is done (once, whoever gets there first)."""
    with db.session() as session:
        left = session.scalar(
            select(func.count()).where(CheckTask.round_id == round_id, CheckTask.done_at.is_(None))
        )
        if left:
            return False
        res = session.execute(
            update(CheckRound)
            .where(CheckRound.id == round_id, CheckRound.finished_at.is_(None))
            .values(finished_at=now)
        )
        if res.rowcount:
            checks = session.scalar(select(func.count()).where(Check.round_id == round_id))
            audit.record(
                session,
                at=now,
                actor=actor,
                type="verify.round_finished",
                payload={"round": round_id, "checks": int(checks or 0)},
            )
        return True


# ---------------------------------------------------------------- the async loop


class Runner:
    """Runs (or joins) a round from one vantage point until every task is done."""

    def __init__(
        self,
        db: Database,
        opts: RunOptions,
        *,
        clock: Clock,
        lease_clock: Clock | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.db = db
        self.opts = opts
        self.clock = clock
        self.lease_clock = lease_clock or SystemClock()
        self.on_progress = on_progress
        self.worker = worker_id()
        self.round_id: int | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="verify-db")
        self.matcher: MediaMatcher | None = None  # built at the first image answer

    def load_matcher(self) -> MediaMatcher:
        if self.matcher is None:
            with self.db.reading() as session:
                self.matcher = media_store.load_matcher(session)
        return self.matcher

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def run(self) -> RunSummary:
        """Run to the end of the round; on interruption give back this process's claims."""
        try:
            return asyncio.run(self._run())
        finally:
            if self.round_id is not None:
                # best effort: the pid check frees them on restart anyway
                with contextlib.suppress(Exception):
                    release_own(self.db, self.round_id, self.worker)
            self._pool.shutdown(wait=True)

    async def _run(self) -> RunSummary:
        opts = self.opts
        started = time.perf_counter()
        rid, resumed, tasks = await self._db(open_round, self.db, opts, self.clock.now())
        self.round_id = rid
        summary = RunSummary(rid, resumed, tasks)
        await self._db(release_dead_claims, self.db, rid)
        done_before = tasks - await self._db(undone, self.db, rid)
        if self.on_progress:
            self.on_progress(done_before, tasks)
        async with Prober(
            settings=opts.settings,
            source_address=opts.vantage.source_address,
            proxy=opts.vantage.proxy,
            connect_to=opts.connect_to,
            only_loopback=opts.only_loopback,
            verify=opts.verify_tls,
        ) as prober:
            steps = _CheckSteps(self, rid, prober, summary, done_before)
            # interrupted (SIGINT) or failed: pump cancels the probes before the client closes
            await pump(steps, self.pace(), until_idle=True)
        summary.finished = await self._db(finish_round, self.db, rid, self.clock.now(), opts.actor)
        summary.elapsed_s = time.perf_counter() - started
        return summary

    def pace(self) -> Pace:
        """Claim ``batch`` tasks whenever fewer than max(concurrency, batch) are in flight;
        record every ``flush_every`` checks (and when nothing else is in flight)."""
        opts = self.opts
        low_water = max(opts.settings.concurrency, opts.batch)
        return Pace(
            claim=opts.batch,
            ahead=low_water - 1 + opts.batch,
            refill=low_water - 1,
            concurrency=low_water - 1 + opts.batch,  # the prober enforces its own limits
            prepare_chunk=opts.batch,
            record_min=opts.flush_every,
            poll=opts.poll_s,
        )


class _CheckSteps:
    """A check round's steps for :func:`takedown.store.worker.pump`: claim tasks, probe
    their targets, record checks; drained once no task of the round is left undone."""

    def __init__(
        self, runner: Runner, round_id: int, prober: Prober, summary: RunSummary, progress: int
    ) -> None:
        self.r = runner
        self.round_id = round_id
        self.prober = prober
        self.summary = summary
        self.progress = progress
        self.lease = timedelta(seconds=runner.opts.lease_s)

    async def claim(self, limit: int) -> list[tuple[int, int, str]]:
        r = self.r
        lease_now = r.lease_clock.now()
        return await r._db(
            claim, r.db, self.round_id, r.worker, limit, lease_now, lease_now + self.lease
        )

    async def prepare(self, tasks: Sequence[_Task]) -> Sequence[_Task]:
        return tasks

    def key(self, task: _Task) -> _Task:
        return task

    async def send(self, task: _Task) -> _Result:
        tid, iid, target = task
        res = await self.prober.probe(target)
        return tid, iid, res, self.r.clock.now()

    async def record(self, results: list[_Result]) -> None:
        r, summary = self.r, self.summary
        matcher = None
        if any(res.pdq for _t, _i, res, _a in results):
            matcher = await r._db(r.load_matcher)
        n, transitions = await r._db(
            record, r.db, self.round_id, r.worker, r.opts.vantage, results, r.opts.actor, matcher
        )
        summary.checked += n
        for _tid, _iid, res, _at in results:
            summary.verdicts[res.verdict.value] += 1
        for t in transitions:
            summary.transitions[f"{t.old}->{t.new}"] += 1
            if t.new == ItemState.OPEN.value:
                summary.reopened += 1
        self.progress += n
        if r.on_progress:
            r.on_progress(self.progress, summary.tasks)

    async def release(self, tasks: list[_Task]) -> None:
        pass  # Runner.run gives back every claim of this process on the way out

    async def drained(self) -> bool:
        r = self.r
        if await r._db(undone, r.db, self.round_id) == 0:
            return True
        # Others hold the rest: wait for them, or for a dead one's lease.
        await r._db(release_dead_claims, r.db, self.round_id)
        return False


def run_round(
    db: Database,
    opts: RunOptions,
    *,
    clock: Clock,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Create or resume the round for ``opts.vantage`` and run it to its end."""
    return Runner(db, opts, clock=clock, on_progress=on_progress).run()


__all__ = [
    "RunOptions",
    "RunSummary",
    "Runner",
    "claim",
    "finish_round",
    "open_round",
    "record",
    "run_round",
]
