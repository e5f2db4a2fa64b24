"""Benchmark: checks per second of the prober, worker scale-out, `takedown status` at scale.

python -m bench verify [--quick]

1. N items (10,000; --quick 2,000) on the platform simulator (a separate process on
   loopback), every item checked once by the in-process runner (SQLite); baseline in the
   same run: a sequential httpx.Client loop over the first 500 items, scaled.
2. PostgreSQL (if reachable): the same round by one `takedown verify --worker` process,
   then by two at once; the gain.
3. `takedown status` fast path on 1,000,000 items and 3,000,000 checks (--quick: 100,000 and
   300,000), SQLite and PostgreSQL (goal < 1 s each).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text

T0 = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
PG = os.environ.get("TAKEDOWN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
BIN = str(Path(sys.executable).parent / "takedown")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "sim", "platform", "--port", str(port), "--tick-every", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(1000):
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sim/stats", trust_env=False, timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.02)
    raise RuntimeError("simulator did not start")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def urls(n: int) -> list[str]:
    return [f"https://twitter.com/user{k % 1000}/status/{10**15 + k}" for k in range(n)]


def fill_items(db, n: int, *, checks_per_item: int = 0) -> None:  # type: ignore[no-untyped-def]
    from takedown.store.schema import Check, Item, Platform

    with db.session() as s:
        p = Platform(slug="twitter", name="Twitter", created_at=T0)
        s.add(p)
        s.flush()
        pid = p.id
    batch = 20_000
    states = ["removed", "restricted", "open", "claimed", "removed", "removed"]
    for start in range(0, n, batch):
        rows = []
        for k in range(start, min(n, start + batch)):
            st = states[k % len(states)]
            verified = T0 + timedelta(hours=k % 48) if st in ("removed", "restricted") else None
            rows.append(
                {
                    "id": k + 1,
                    "target": f"https://twitter.com/u/status/{10**15 + k}",
                    "kind": "url",
                    "host": "twitter.com",
                    "platform_id": pid,
                    "category": ("suicide", "drugs", "csam")[k % 3],
                    "basis": "b",
                    "decision_ref": f"D{k}",
                    "listed_at": T0,
                    "state": st,
                    "state_at": verified or T0,
                    "deadline_at": T0 + timedelta(hours=24),
                    "verified_at": verified,
                    "ttr_s": (k % 48) * 3600.0 if verified else None,
                    "flags": "",
                }
            )
        with db.session() as s:
            s.execute(insert(Item), rows)
            if checks_per_item:
                s.execute(
                    insert(Check),
                    [
                        {"item_id": r["id"], "verdict": "removed", "at": T0 + timedelta(hours=c)}
                        for r in rows
                        for c in range(checks_per_item)
                    ],
                )


def bench_prober(n: int) -> None:
    from takedown.clock import SimClock
    from takedown.store.db import Database
    from takedown.store.migrate import upgrade
    from takedown.store.schema import Item, Platform
    from takedown.verify.probe import ProbeSettings, parse_connect_to
    from takedown.verify.runner import RunOptions, run_round

    proc, port = start_sim()
    try:
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as d:
            db = Database(os.path.join(d, "b.db"))
            upgrade(db)
            with db.session() as s:
                p = Platform(slug="twitter", name="Twitter", created_at=T0)
                s.add(p)
                s.flush()
                s.execute(
                    insert(Item),
                    [
                        {
                            "target": u,
                            "kind": "url",
                            "platform_id": p.id,
                            "category": "drugs",
                            "basis": "b",
                            "decision_ref": f"D{k}",
                            "listed_at": T0,
                            "state": "open",
                            "flags": "",
                        }
                        for k, u in enumerate(urls(n))
                    ],
                )
            opts = RunOptions(
                settings=ProbeSettings(concurrency=200, per_host=200),
                connect_to=parse_connect_to([f"twitter.com={base}"]),
                only_loopback=True,
                batch=500,
                flush_every=500,
            )
            sim0, cpu0 = cpu_s(proc.pid), time.process_time()
            summary = run_round(db, opts, clock=SimClock(T0))
            cpu, sim_cpu = time.process_time() - cpu0, cpu_s(proc.pid) - sim0
            assert summary.checked == n, summary
            rate = n / summary.elapsed_s
            db.close()
        m = 500
        with httpx.Client(trust_env=False) as client:
            t, c = time.perf_counter(), time.process_time()
            for u in urls(m):
                client.get(base + u.split("twitter.com", 1)[1], headers={"Host": "twitter.com"})
            seq = m / (time.perf_counter() - t)
            seq_cpu = m / (time.process_time() - c)
        print(
            f"prober (runner, SQLite, concurrency 200): {n} checks in {summary.elapsed_s:.2f} s "
            f"= {rate:,.0f} checks/s (goal >= 1,000); {n / cpu:,.0f} checks per CPU-second "
            f"of this process (DB writes included); simulator {sim_cpu / n * 1e6:,.0f} us CPU "
            f"per request (its ceiling ~{n / sim_cpu:,.0f} req/s per core)"
        )
        print(
            f"baseline sequential httpx.Client, {m} items: {seq:,.0f} checks/s, "
            f"{seq_cpu:,.0f} per CPU-second (scaled to {n}: {n / seq:.1f} s); "
            f"ratio {rate / seq:.1f}x"
        )
        bench_workers(n, base)
    finally:
        proc.terminate()
        proc.wait(10)


def pg_db() -> str | None:
    name = f"takedown_bench_{secrets.token_hex(3)}"
    try:
        eng = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
    except Exception as exc:
        print(f"PostgreSQL not reachable ({exc.__class__.__name__}): skipped")
        return None
    return f"{PG}/{name}"


def drop_pg(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    eng = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def bench_workers(n: int, base: str) -> None:
    from takedown.store.db import Database
    from takedown.store.migrate import upgrade
    from takedown.store.schema import Item, Platform

    url = pg_db()
    if url is None:
        return
    try:
        db = Database(url)
        upgrade(db)
        with db.session() as s:
            p = Platform(slug="twitter", name="Twitter", created_at=T0)
            s.add(p)
            s.flush()
            s.execute(
                insert(Item),
                [
                    {
                        "target": u,
                        "kind": "url",
                        "platform_id": p.id,
                        "category": "drugs",
                        "basis": "b",
                        "decision_ref": f"D{k}",
                        "listed_at": T0,
                        "state": "open",
                        "flags": "",
                    }
                    for k, u in enumerate(urls(n))
                ],
            )
        cmd = [
            BIN,
            "--db",
            url,
            "verify",
            "--worker",
            "--concurrency",
            "200",
            "--only-loopback",
            "--connect-to",
            f"twitter.com={base}",
            "--json",
        ]
        times, runs = [], []
        for workers in (1, 2):
            # the first worker finished its round: the pair opens a new one of the same items
            t = time.perf_counter()
            procs = [
                subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(workers)
            ]
            outs = [p.communicate(timeout=600)[0] for p in procs]
            times.append(time.perf_counter() - t)
            docs = [json.loads(o) for o in outs]
            checked = sum(d.get("checked", 0) for d in docs)
            # the round's own time: the workers start together, the last one ends it
            runs.append(max(d.get("elapsed_s") or 0.0 for d in docs))
            print(
                f"PostgreSQL, {workers} worker process(es): {checked} checks in "
                f"{times[-1]:.2f} s = {n / times[-1]:,.0f} checks/s incl. process start; "
                f"round {runs[-1]:.2f} s = {n / runs[-1]:,.0f} checks/s "
                f"(per worker: {[d.get('checked') for d in docs]})"
            )
        print(
            f"gain from a second worker: {times[0] / times[1]:.2f}x incl. process start, "
            f"{runs[0] / runs[1]:.2f}x round time (2 cores shared with the simulator, "
            f"PostgreSQL and this bench)"
        )
    finally:
        db.close()
        drop_pg(url)


def bench_status(n_items: int) -> None:
    from takedown import ledger
    from takedown.store.db import Database
    from takedown.store.migrate import upgrade

    now = T0 + timedelta(days=60)
    targets: list[tuple[str, str | None]] = []
    d = tempfile.mkdtemp()
    targets.append(("SQLite", os.path.join(d, "status.db")))
    targets.append(("PostgreSQL", pg_db()))
    for label, url in targets:
        if url is None:
            continue
        db = Database(url)
        try:
            upgrade(db)
            t = time.perf_counter()
            fill_items(db, n_items, checks_per_item=3)
            build = time.perf_counter() - t
            if db.dialect == "postgresql":
                with db.engine.connect() as c:
                    c.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                with db.reading() as s:
                    fig = ledger.status_fast(s, "twitter", now)[0]
                best = min(best, time.perf_counter() - t)
            cmd_t = time.perf_counter()
            subprocess.run(
                [
                    BIN,
                    "--db",
                    url,
                    "status",
                    "--platform",
                    "twitter",
                    "--json",
                ],
                check=True,
                capture_output=True,
            )
            cmd = time.perf_counter() - cmd_t
            print(
                f"status on {label}, {n_items:,} items / {3 * n_items:,} checks "
                f"(built in {build:.0f} s): ledger query {best * 1000:.0f} ms "
                f"(goal < 1 s); whole `takedown status` command {cmd:.2f} s; "
                f"flagged {fig.flagged:,}, remaining {fig.remaining:,}, "
                f"median TTR {fig.ttr_median_h} h"
            )
        finally:
            db.close()
            if label == "PostgreSQL":
                drop_pg(url)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    bench_prober(2_000 if quick else 10_000)
    bench_status(100_000 if quick else 1_000_000)
    return 0
