"""Benchmark: checks per second of the prober, worker scale-out, `takedown status` at scale.

python -m bench verify [--quick]

1. N items (10,000; --quick 2,000) on the platform simulator (a separate process on
   loopback), every item checked once by the in-process runner (SQLite); baseline in the
   same run: a sequential httpx.Client loop over the first 500 items, scaled.
2. PostgreSQL (if reachable): the same round by one `takedown verify --worker` process,
   then by two at once; the gain, with the simulator answering at once (CPU-bound: on 2
   cores the first worker and the simulator already fill the machine) and with every
   answer 50 ms away (network-bound, like probing a real platform).
3. `takedown status` fast path on 1,000,000 items and 3,000,000 checks (--quick: 100,000 and
   300,000), SQLite and PostgreSQL (goal < 1 s each).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text

from bench.common import PG, drop_pg, pg_db
from takedown.store.db import Database
from takedown.store.migrate import upgrade

T0 = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
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
    """One platform ``twitter`` with ``n`` items (projection set) and ``checks_per_item``
    checks each, generated inside the database (INSERT … SELECT over a series): states cycle
    removed, restricted, open, claimed, removed, removed; categories suicide, drugs, csam."""
    from takedown.store.schema import Platform, target_key

    with db.session() as s:
        p = Platform(slug="twitter", name="Twitter", created_at=T0)
        s.add(p)
        s.flush()
        pid = p.id
    pg = db.dialect == "postgresql"
    if pg:
        series = f"SELECT generate_series(0, {n - 1}) AS k"
        t0 = "TIMESTAMPTZ '2021-03-10 09:00:00+00'"

        def hours(expr: str) -> str:
            return f"({t0} + ({expr}) * INTERVAL '1 hour')"
    else:
        series = (
            "WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s "
            f"WHERE k < {n - 1}) SELECT k FROM s"
        )

        def hours(expr: str) -> str:
            return (
                "(strftime('%Y-%m-%d %H:%M:%S', '2021-03-10 09:00:00', '+' || ({expr}) || ' hours')"
                " || '.000000')"
            ).replace("{expr}", expr)

    url = f"'https://twitter.com/u/status/' || CAST({10**15} + k AS TEXT)"
    # the unique index's key of each target, as the store computes it (schema.target_key)
    key = (
        f"substr(encode(sha256(convert_to({url}, 'UTF8')), 'hex'), 1, 32)"
        if pg
        else f"target_key({url})"
    )
    done = "(k % 6 IN (0, 1, 4, 5))"
    state = (
        "(CASE k % 6 WHEN 1 THEN 'restricted' WHEN 2 THEN 'open' WHEN 3 THEN 'claimed' "
        "ELSE 'removed' END)"
    )
    category = "(CASE k % 3 WHEN 0 THEN 'suicide' WHEN 1 THEN 'drugs' ELSE 'csam' END)"
    verified = f"(CASE WHEN {done} THEN {hours('k % 48')} END)"
    items_sql = f"""
        INSERT INTO items (id, target, target_key, kind, host, platform_id, category, basis,
                           decision_ref, listed_at, state, state_at, deadline_at, verified_at,
                           ttr_s, flags)
        SELECT k + 1, {url}, {key}, 'url',
               'twitter.com', {pid}, {category}, 'b', 'D' || CAST(k AS TEXT), {hours("0")},
               {state}, COALESCE({verified}, {hours("0")}), {hours("24")}, {verified},
               CASE WHEN {done} THEN (k % 48) * 3600.0 END, ''
        FROM ({series}) AS g
    """
    with db.engine.begin() as c:
        if not pg:
            raw = c.connection.driver_connection
            raw.create_function("target_key", 1, target_key, deterministic=True)  # type: ignore[union-attr]
        c.execute(text(items_sql))
        for h in range(checks_per_item):
            c.execute(
                text(
                    f"INSERT INTO checks (item_id, verdict, at) "
                    f"SELECT id, 'removed', {hours(str(h))}"
                    f" FROM items WHERE platform_id = {pid}"
                )
            )
        if pg:
            c.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('items', 'id'), {n + 1})")


def add_url_items(db: Database, n: int) -> None:
    """One platform and ``n`` open URL items on it (bulk insert)."""
    from takedown.store.schema import Item, Platform

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


def bench_prober(n: int) -> None:
    from takedown.clock import SimClock
    from takedown.verify.probe import ProbeSettings, parse_connect_to
    from takedown.verify.runner import RunOptions, run_round

    proc, port = start_sim()
    try:
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as d:
            db = Database(os.path.join(d, "b.db"))
            upgrade(db)
            add_url_items(db, n)
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


def bench_workers(n: int, base: str) -> None:
    """One `takedown verify --worker` process, then two at once, on PostgreSQL: first with
    the simulator answering at once (the machine's CPU is the limit), then with every answer
    50 ms away (the network is the limit, as from a real vantage point)."""
    url = pg_db()
    if url is None:
        return
    try:
        db = Database(url)
        upgrade(db)
        add_url_items(db, n)
        for label, concurrency, delay_ms in (
            ("answers at once, concurrency 200 per worker", 200, 0),
            ("answers 50 ms away, concurrency 50 per worker", 50, 50),
        ):
            httpx.post(f"{base}/_sim/faults", json={"content_delay_ms": delay_ms}, trust_env=False)
            print(f"PostgreSQL, simulator {label}:")
            _worker_pair(url, base, n, concurrency)
    finally:
        httpx.post(f"{base}/_sim/faults", json={}, trust_env=False)
        db.close()
        drop_pg(url)


def _worker_pair(url: str, base: str, n: int, concurrency: int) -> None:
    cmd = [
        BIN,
        "--db",
        url,
        "verify",
        "--worker",
        "--concurrency",
        str(concurrency),
        "--only-loopback",
        "--connect-to",
        f"twitter.com={base}",
        "--json",
    ]
    times, runs = [], []
    for workers in (1, 2):
        # each run opens a new round of the same items (the last one finished)
        cpu0 = _children_cpu()
        t = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        times.append(time.perf_counter() - t)
        cpu = _children_cpu() - cpu0
        docs = [json.loads(o) for o in outs]
        checked = sum(d.get("checked", 0) for d in docs)
        # the round's own time: the workers start together, the last one ends it
        runs.append(max(d.get("elapsed_s") or 0.0 for d in docs))
        print(
            f"    {workers} worker(s): {checked} checks in {times[-1]:.2f} s = "
            f"{n / times[-1]:,.0f} checks/s incl. process start; round {runs[-1]:.2f} s = "
            f"{n / runs[-1]:,.0f} checks/s; workers' CPU {cpu:.1f} s "
            f"(per worker: {[d.get('checked') for d in docs]})"
        )
    print(
        f"    gain from a second worker: {runs[0] / runs[1]:.2f}x round time, "
        f"{times[0] / times[1]:.2f}x incl. process start"
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _schema_tag() -> str:
    """A short digest of the migration, so a kept database is rebuilt when the schema changes."""
    import hashlib

    import takedown.store as store

    files = sorted(Path(store.__file__).parent.glob("migrations/versions/*.py"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:8]


def _status_targets(n_items: int, keep: str | None) -> list[tuple[str, str | None, str | None]]:
    """(label, url, marker) for SQLite and PostgreSQL. With ``keep`` the databases are named by
    size and schema digest and reused when their marker file (written once built) exists."""
    if keep is None:
        return [
            ("SQLite", os.path.join(tempfile.mkdtemp(), "status.db"), None),
            ("PostgreSQL", pg_db(), None),
        ]
    tag = f"{n_items}_{_schema_tag()}"
    os.makedirs(keep, exist_ok=True)
    path = os.path.join(keep, f"status_{tag}.db")
    out: list[tuple[str, str | None, str | None]] = [("SQLite", path, path + ".built")]
    if not os.path.exists(path + ".built"):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
    name = f"takedown_bench_status_{tag}"
    marker = os.path.join(keep, f"{name}.built")
    try:
        if not os.path.exists(marker):
            drop_pg(f"{PG}/{name}")
            eng = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            eng.dispose()
        out.append(("PostgreSQL", f"{PG}/{name}", marker))
    except Exception as exc:
        print(f"PostgreSQL not reachable ({exc.__class__.__name__}): skipped")
    return out


def _discard(label: str, url: str, keep: str | None) -> None:
    """Remove a database ``_status_targets`` made for this run only (not one kept)."""
    if keep is not None:
        return
    if label == "PostgreSQL":
        drop_pg(url)
    else:
        shutil.rmtree(os.path.dirname(url), ignore_errors=True)


def bench_status(n_items: int, *, keep: str | None = None, only: str | None = None) -> None:
    """`takedown status` on ``n_items`` items and 3 checks each; ``keep``: a directory to keep
    the SQLite file in (and keep the PostgreSQL database), reused by later runs."""
    from takedown import ledger

    now = T0 + timedelta(days=60)
    for label, url, marker in _status_targets(n_items, keep):
        reused = marker is not None and os.path.exists(marker)
        if url is None:
            continue
        if only and label.lower() != only:
            _discard(label, url, keep)
            continue
        db = Database(url)
        try:
            build = 0.0
            if not reused:
                upgrade(db)
                t = time.perf_counter()
                fill_items(db, n_items, checks_per_item=3)
                build = time.perf_counter() - t
                if db.dialect == "postgresql":
                    # what autovacuum does after a bulk load: statistics and the visibility
                    # map (index-only scans)
                    with db.engine.connect() as c:
                        c.execution_options(isolation_level="AUTOCOMMIT").execute(
                            text("VACUUM ANALYZE")
                        )
                if marker is not None:
                    Path(marker).touch()
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                with db.reading() as s:
                    fig = ledger.status_fast(s, "twitter", now)[0]
                best = min(best, time.perf_counter() - t)
            cmd_best = float("inf")
            env = {k: v for k, v in os.environ.items() if k != "TAKEDOWN_CLOCK"}
            for _ in range(2):
                cmd_t = time.perf_counter()
                subprocess.run(
                    [BIN, "--db", url, "status", "--platform", "twitter", "--json"],
                    check=True,
                    capture_output=True,
                    env=env,
                )
                cmd_best = min(cmd_best, time.perf_counter() - cmd_t)
            built = "reused" if reused else f"built in {build:.0f} s"
            print(
                f"status on {label}, {n_items:,} items / {3 * n_items:,} checks ({built}): "
                f"ledger query {best * 1000:.0f} ms (goal < 1 s); whole `takedown status` "
                f"command {cmd_best:.2f} s; flagged {fig.flagged:,}, remaining "
                f"{fig.remaining:,}, overdue {fig.overdue:,}, on time {fig.on_time_share}, "
                f"TTR median {fig.ttr_median_h} h, p90 {fig.ttr_p90_h} h",
                flush=True,
            )
        finally:
            db.close()
            _discard(label, url, keep)


def main(argv: list[str]) -> int:
    """``python -m bench verify [--quick] [--status-only] [--items N] [--keep DIR]
    [--backend sqlite|postgresql]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench verify")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--status-only", action="store_true", help="only `takedown status`")
    ap.add_argument("--items", type=int, help="items for the status part (default 1,000,000)")
    ap.add_argument("--keep", metavar="DIR", help="keep the status databases; reuse them")
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], help="status on one only")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.status_only:
        bench_prober(2_000 if args.quick else 10_000)
    n = args.items or (100_000 if args.quick else 1_000_000)
    bench_status(n, keep=args.keep, only=args.backend)
    return 0
