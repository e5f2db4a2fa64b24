"""Ladder evaluation cost against computing the ledger figures it reads.

``python -m bench ladder [--quick]``: a SQLite database of P platforms x N items (items
projection: state, state_at, deadline_at, listed_at, verified_at). Baseline: the figures
of each platform at one ``now`` by one SQL aggregate query per platform. Measured: the pure
ladder evaluation (examples/ladders/ru-2021.toml) over those figures, and a replay of one
platform's 90 days at hourly steps (baseline: the same aggregate at each step).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, case, func, insert, or_, select

from takedown.model import Figures
from takedown.policy import spec
from takedown.policy.evaluate import Step, evaluate, replay
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Item, Platform

LADDER = Path(__file__).resolve().parents[1] / "examples" / "ladders" / "ru-2021.toml"
NOW = datetime(2021, 5, 17, tzinfo=UTC)
START = datetime(2021, 3, 1, tzinfo=UTC)


def populate(db: Database, platforms: int, items: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    with db.session() as s:
        s.execute(
            insert(Platform),
            [{"slug": f"p{i}", "name": f"P{i}", "created_at": START} for i in range(platforms)],
        )
        pids = list(s.scalars(select(Platform.id).order_by(Platform.id)))
    batch: list[dict[str, object]] = []
    for n, pid in enumerate(pids):
        # platform n removes a share that grows with n; some never comply
        remove_p = (n % 10) / 10
        for k in range(items):
            listed = START + timedelta(hours=rng.randrange(0, 24 * 70))
            deadline = listed + timedelta(hours=24)
            done = rng.random() < remove_p
            at = listed + timedelta(hours=rng.expovariate(1 / 48)) if done else None
            batch.append(
                {
                    "target": f"https://p{pid}.example/{k}",
                    "kind": "url",
                    "platform_id": pid,
                    "category": "suicide",
                    "basis": "b",
                    "decision_ref": f"D{k % 13}",
                    "listed_at": listed,
                    "state": "removed" if done else "open",
                    "state_at": at,
                    "verified_at": at,
                    "deadline_at": deadline,
                    "flags": "",
                }
            )
            if len(batch) >= 20_000:
                with db.session() as s:
                    s.execute(insert(Item), batch)
                batch.clear()
    if batch:
        with db.session() as s:
            s.execute(insert(Item), batch)
    return pids


def figures_sql(session, pid: int, slug: str, now: datetime) -> Figures:  # type: ignore[no-untyped-def]
    """One aggregate query: the ledger figures of one platform as of ``now``."""
    done = and_(Item.state.in_(("removed", "restricted")), Item.state_at <= now)
    due = Item.deadline_at <= now

    def n(cond: object) -> object:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = session.execute(
        select(
            func.count(),
            n(done),
            n(and_(due, ~done)),
            n(due),
            n(and_(due, Item.verified_at <= Item.deadline_at, Item.verified_at <= now)),
        ).where(
            Item.platform_id == pid,
            Item.listed_at <= now,
            or_(Item.delisted_at.is_(None), Item.delisted_at > now),
        )
    ).one()
    flagged, removed, overdue, due_n, on_time = (int(x) for x in row)
    return Figures(
        platform=slug,
        as_of=now,
        flagged=flagged,
        removed=removed,
        remaining=flagged - removed,
        overdue=overdue,
        removed_share=removed / flagged if flagged else None,
        on_time_share=on_time / due_n if due_n else None,
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench ladder")
    ap.add_argument("--quick", action="store_true", help="100 platforms x 1,000 items")
    ap.add_argument("--platforms", type=int)
    ap.add_argument("--items", type=int)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # long runs
    platforms = args.platforms or (100 if args.quick else 1000)
    items = args.items or (1000 if args.quick else 10_000)
    ladder = spec.load(LADDER)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(str(Path(tmp) / "bench.db"))
        upgrade(db)
        t0 = time.perf_counter()
        pids = populate(db, platforms, items)
        print(
            f"populated {platforms} platforms x {items} items in {time.perf_counter() - t0:.1f} s"
        )

        with db.reading() as s:
            t0 = time.perf_counter()
            figs = [figures_sql(s, pid, f"p{pid}", NOW) for pid in pids]
            t_fig = time.perf_counter() - t0
            t0 = time.perf_counter()
            hist = [figures_sql(s, pid, f"p{pid}", NOW - timedelta(days=14)) for pid in pids]
            t_hist = time.perf_counter() - t0
        recent = {7: Figures("x", NOW)}
        t0 = time.perf_counter()
        proposals = 0
        for f, h in zip(figs, hist, strict=True):
            proposals += len(evaluate(ladder, f, [h], [], {}, NOW, recent=recent))
        t_eval = time.perf_counter() - t0
        print(f"one now, {platforms} platforms:")
        print(
            f"  baseline: figures, one SQL aggregate per platform  {t_fig * 1e3:9.1f} ms "
            f"({t_fig / platforms * 1e6:.0f} us/platform)"
        )
        print(f"  history figures (14 days earlier), same query      {t_hist * 1e3:9.1f} ms")
        print(
            f"  ladder evaluation (pure), {proposals} proposals       {t_eval * 1e3:9.1f} ms "
            f"({t_eval / platforms * 1e6:.0f} us/platform)"
        )
        print(f"  evaluation / figures = {t_eval / t_fig:.1%} (goal < 20%)")

        pid = pids[-1]
        steps_t = [NOW - timedelta(days=90) + timedelta(hours=h) for h in range(90 * 24)]
        with db.reading() as s:
            t0 = time.perf_counter()
            series = [figures_sql(s, pid, f"p{pid}", t) for t in steps_t]
            t_series = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = replay(ladder, [Step(f.as_of, f, recent) for f in series])
        t_replay = time.perf_counter() - t0
        changes = sum(len(r.proposals) for r in results)
        print(f"replay of one platform ({items} items), 90 days hourly = {len(steps_t)} steps:")
        print(f"  baseline: figures at each step (SQL)              {t_series * 1e3:9.1f} ms")
        print(f"  replay (evaluate + apply in memory), {changes} changes {t_replay * 1e3:9.1f} ms")
        print(f"  replay / figures = {t_replay / t_series:.1%} (goal < 20%)")
        db.close()
    return 0
