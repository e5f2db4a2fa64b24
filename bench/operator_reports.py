"""A fleet of enforcement points reporting back (issue 17, section 3).

python -m bench operator_reports [--points N] [--operators K] [--seconds S]
                                 [--concurrency C] [--capacity N] [--counters D]
                                 [--backend sqlite|postgres|both]

A real `takedown serve` (uvicorn, no delivery worker) on loopback, over SQLite and over
PostgreSQL. K operators (10) run N points (1,000) that each POST a signed report (D = 20
directive counters) once a minute, spread evenly over the minute:

- **sustained**: that schedule in real time for S seconds (60: every point reports once);
  reports/s offered and stored, latency p50/p99, late or refused reports;
- **capacity**: C (32) concurrent clients send reports of fresh points as fast as the
  server stores them (N = 3,000 reports): reports/s and latency, and its ratio to the
  baseline the fleet needs (N points / 60 s);
- **status**: `GET /api/operators/status` over all those points (what a staff member or
  `takedown operators status` reads), p50 of 5.

Every loop is bounded; loopback only. Signing happens in this process (the points' side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import drop_pg, pg_db
from takedown import accounts
from takedown.fleet import reports as rep
from takedown.fleet import store
from takedown.store.db import Database
from takedown.store.migrate import upgrade


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(url: str, operators: int) -> tuple[list[tuple[str, str]], str]:
    """Operators with their tokens, and a staff token, in a fresh database."""
    db = Database(url)
    upgrade(db)
    now = datetime.now(UTC)
    local = accounts.bootstrap("bench")
    ops = []
    for i in range(operators):
        name = f"op-{i:02d}"
        _, token = store.add_operator(db, name, now=now, actor=local)
        ops.append((name, token))
    accounts.add_account(db, "auditor", roles=["auditor"], password=None, now=now, actor=local)
    staff_token = accounts.issue_token(db, "auditor", now=now, actor=local)
    db.close()
    return ops, staff_token


def start_server(db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TAKEDOWN_DB=db_url)
    cmd = [sys.executable, "-c", "from takedown.cli import main; main()", "serve"]
    cmd += ["--no-worker", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start within 60 s")


def make_report(operator: str, point: str, counters: int, n: int) -> rep.Report:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = tuple(
        rep.DirectiveCounters(f"m{d}", flows=n * 3 + d, bytes=n * 100_000 + d, measure_id=d)
        for d in range(counters)
    )
    return rep.Report(operator, point, now, 12, 30.0, False, "", rows)


async def send(c: httpx.AsyncClient, token: str, r: rep.Report) -> tuple[float, int]:
    body = r.body()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        rep.SIGNATURE_HEADER: rep.sign(token, body, int(r.sent_at.timestamp())),
    }
    t0 = time.perf_counter()
    try:
        answer = await c.post("/api/operators/reports", content=body, headers=headers)
        code = answer.status_code
    except httpx.HTTPError:
        code = 0
    return time.perf_counter() - t0, code


def quantiles(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs) or [float("nan")]
    return statistics.median(xs), xs[min(len(xs) - 1, int(0.99 * len(xs)))]


async def sustained(base: str, ops: list[tuple[str, str]], args: argparse.Namespace) -> dict:
    """Each point once a minute, at its slot; for ``args.seconds``."""
    slot = 60.0 / args.points
    total = int(args.seconds / slot)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    late = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, trust_env=False) as c:
        start = time.monotonic()

        async def one(k: int) -> None:
            nonlocal late
            point = k % args.points
            name, token = ops[point % len(ops)]
            r = make_report(name, f"pt-{point:05d}", args.counters, k // args.points)
            took, code = await send(c, token, r)
            latencies.append(took)
            codes[code] = codes.get(code, 0) + 1
            if took > slot * 60:  # not stored before the point's next report was due
                late += 1

        tasks = []
        for k in range(total):
            delay = start + k * slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return {"n": total, "elapsed": elapsed, "lat": latencies, "codes": codes, "late": late}


async def capacity(base: str, ops: list[tuple[str, str]], args: argparse.Namespace) -> dict:
    """``args.concurrency`` clients send ``args.capacity`` reports of fresh points."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue = iter(range(args.capacity))
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, trust_env=False) as c:

        async def worker() -> None:
            for k in queue:
                name, token = ops[k % len(ops)]
                took, code = await send(
                    c, token, make_report(name, f"cap-{k:06d}", args.counters, 1)
                )
                latencies.append(took)
                codes[code] = codes.get(code, 0) + 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - start
    return {"n": args.capacity, "elapsed": elapsed, "lat": latencies, "codes": codes}


def status_latency(base: str, staff_token: str) -> tuple[float, int]:
    times, points = [], 0
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as c:
        for _ in range(5):
            t0 = time.perf_counter()
            r = c.get("/api/operators/status", headers={"Authorization": f"Bearer {staff_token}"})
            times.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"status answered {r.status_code}: {r.text[:200]}")
            points = sum(o["points"] for o in r.json())
    return statistics.median(times), points


def run_backend(label: str, url: str, args: argparse.Namespace) -> None:
    ops, staff_token = prepare(url, args.operators)
    port = free_port()
    proc = start_server(url, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        need = args.points / 60.0
        s = asyncio.run(sustained(base, ops, args))
        cap = asyncio.run(capacity(base, ops, args))
        status_s, points = status_latency(base, staff_token)
    finally:
        proc.terminate()
        proc.wait(30)
    s50, s99 = quantiles(s["lat"])
    c50, c99 = quantiles(cap["lat"])
    rate = cap["n"] / cap["elapsed"]
    stored = s["codes"].get(201, 0)
    print(f"{label}: {args.points} points of {args.operators} operators, "
          f"{args.counters} counters a report")  # fmt: skip
    offered = s["n"] / s["elapsed"]
    print(
        f"  sustained  offered {offered:6.1f}/s  stored {stored / s['elapsed']:6.1f}/s"
        f"  p50 {s50 * 1000:7.1f} ms  p99 {s99 * 1000:7.1f} ms  ({s['n']} reports in "
        f"{s['elapsed']:.0f} s; by status {s['codes']}; late {s['late']})"
    )
    print(
        f"  capacity   {rate:6.1f} reports/s with {args.concurrency} clients"
        f"  p50 {c50 * 1000:7.1f} ms  p99 {c99 * 1000:7.1f} ms  (by status {cap['codes']})"
    )
    print(f"  baseline   the fleet needs {need:.1f} reports/s: capacity is {rate / need:.1f}x that")
    print(f"  status     GET /api/operators/status over {points} points: {status_s * 1000:.0f} ms")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench operator_reports")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--operators", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--capacity", type=int, default=3000)
    ap.add_argument("--counters", type=int, default=20)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
            run_backend("SQLite", f"sqlite:///{Path(tmp) / 'takedown.db'}", args)
    if args.backend in ("postgres", "both"):
        url = pg_db()
        if url is not None:
            try:
                run_backend("PostgreSQL", url, args)
            finally:
                drop_pg(url)
    return 0
