"""Public lookups must not starve the platform API (issue 15, attack 4).

python -m bench public_load [--items N] [--clients C] [--seconds S] [--src DIR]
                            [--concurrency N]

A real `takedown serve` (uvicorn, no delivery worker) on loopback over a SQLite register of
N items (200,000) no platform answers for — whole domains under N/10 decisions, generated
inside the database (INSERT … SELECT over a series) — and one platform with a token. It
measures the latency of an authenticated platform API call (`GET /api/platform/notices`,
one after another) idle, then while C (200) concurrent public lookups, each request with
its own Host header, run for S seconds (20) from a separate process; p50/p99 and the
ratio under load / idle (goal: within 2x). Two phases under load: the default public
limits (one client address, so its bucket answers 429 most of the time), and
`--public-rate 0` (no per-client limit: only the concurrency limit and the index stand
between the lookups and the API). ``--src DIR`` runs the server from another source tree
(e.g. an export of an older commit, for before/after figures; its serve must accept the
options, so ``--src`` runs one phase without the public options). Loopback only, every
loop bounded.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from takedown import platforms
from takedown.store.db import Database
from takedown.store.migrate import upgrade

LOADER = r"""
import asyncio, json, sys, time, httpx
url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
items = int(sys.argv[4])
codes = {}
async def one(c, i, stop):
    n = 0
    while time.monotonic() < stop:
        n += 1
        host = f"site{(i * 7919 + n * 104729) % items}.example"
        try:
            r = await c.get("/public/lookup", params={"host": host, "format": "json"},
                            headers={"Host": f"h{i}-{n}.attacker.example"})
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
        except httpx.HTTPError as e:
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
async def main():
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as c:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(one(c, i, stop) for i in range(clients)))
asyncio.run(main())
print(json.dumps({str(k): v for k, v in codes.items()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_register(path: Path, n: int) -> tuple[str, str]:
    """A SQLite database with ``n`` whole-domain register items and a platform; its URL and
    the platform's API token."""
    url = f"sqlite:///{path}"
    db = Database(url)
    upgrade(db)
    listed = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.000000")
    series = (
        "WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s "
        f"WHERE k < {n - 1}) SELECT k FROM s"
    )
    sql = f"""
        INSERT INTO items (target, kind, host, platform_id, category, basis, decision_ref,
                           listed_at, state, flags)
        SELECT 'site' || k || '.example', 'domain', 'site' || k || '.example', NULL,
               CASE k % 3 WHEN 0 THEN 'gambling' WHEN 1 THEN 'drugs' ELSE 'piracy' END,
               'b', 'D' || (k / 10), '{listed}', 'open', ''
        FROM ({series}) AS g
    """
    with db.engine.begin() as c:
        c.execute(text(sql))
    now = datetime.now(UTC)
    hosts = [platforms.parse_host_spec("twitter.com=text")]
    platforms.add_platform(
        db, "twitter", name="Twitter", notice_url=None, hosts=hosts, now=now, actor="bench"
    )
    token = platforms.issue_token(db, "twitter", now=now, actor="bench")
    db.close()
    return url, token


def start_server(db_url: str, port: int, extra: list[str], src: str | None) -> subprocess.Popen:
    env = dict(os.environ, TAKEDOWN_DB=db_url)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-c", "from takedown.cli import main; main()", "serve"]
    cmd += ["--no-worker", "--port", str(port), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str, first_host: str) -> float:
    """Seconds until a public lookup answers 200 (the first index built); bounded."""
    t0 = time.monotonic()
    for _ in range(1200):
        try:
            r = httpx.get(
                f"{base}/public/lookup",
                params={"host": first_host, "format": "json"},
                timeout=60,
                trust_env=False,
            )
            if r.status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer a lookup within 120 s")


API_TIMEOUT = 60.0  # a call that takes longer counts as this long (and as a timeout)


def api_latencies(base: str, token: str, seconds: float, limit: int = 2000) -> list[float]:
    """Sequential authenticated platform API calls for ``seconds`` (at most ``limit``)."""
    out: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=API_TIMEOUT, trust_env=False) as c:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop and len(out) < limit:
            t0 = time.perf_counter()
            try:
                r = c.get("/api/platform/notices")
            except httpx.TimeoutException:
                out.append(API_TIMEOUT)
                continue
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"platform API answered {r.status_code}: {r.text[:200]}")
    return out


def quantiles(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def phase(base: str, token: str, args: argparse.Namespace) -> dict:
    """Idle latencies, then latencies under C concurrent public lookups."""
    idle = api_latencies(base, token, 5.0, limit=300)
    loader = subprocess.Popen(
        [sys.executable, "-c", LOADER, base, str(args.clients), str(args.seconds), str(args.items)],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(min(2.0, args.seconds / 4))  # let the lookups pile up before measuring
    loaded = api_latencies(base, token, args.seconds - min(2.0, args.seconds / 4) - 0.5)
    out, _ = loader.communicate(timeout=args.seconds + 180)
    timeouts = sum(1 for x in loaded if x >= API_TIMEOUT)
    return {
        "idle": quantiles(idle),
        "load": quantiles(loaded),
        "n": len(loaded),
        "timeouts": timeouts,
        "codes": out,
    }


def report(name: str, r: dict) -> None:
    (i50, i99), (l50, l99) = r["idle"], r["load"]
    print(f"{name}:")
    print(f"  platform API idle      p50 {i50 * 1000:8.1f} ms  p99 {i99 * 1000:8.1f} ms")
    print(
        f"  under public load      p50 {l50 * 1000:8.1f} ms  p99 {l99 * 1000:8.1f} ms"
        f"  ({r['n']} calls, {r['timeouts']} timed out at {API_TIMEOUT:.0f} s)"
    )
    print(f"  ratio load/idle        p50 {l50 / i50:6.2f}x     p99 {l99 / i99:6.2f}x")
    print(f"  public lookups by status: {r['codes'].strip()}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench public_load")
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--src", help="run the server from this source tree (before/after)")
    ap.add_argument("--concurrency", type=int, help="pass --public-concurrency N to serve")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    common = ["--public-concurrency", str(args.concurrency)] if args.concurrency else []
    phases = [("default public limits", common)]
    if not args.src:
        phases.append(("no per-client limit (--public-rate 0)", [*common, "--public-rate", "0"]))
    with tempfile.TemporaryDirectory(prefix="bench-public-") as tmp:
        t0 = time.monotonic()
        db_url, token = make_register(Path(tmp) / "register.db", args.items)
        print(f"register of {args.items:,} items generated in {time.monotonic() - t0:.1f} s")
        for name, extra in phases:
            port = free_port()
            proc = start_server(db_url, port, extra, args.src)
            base = f"http://127.0.0.1:{port}"
            try:
                ready = wait_ready(base, "site1.example")
                print(f"server up, first lookup answered after {ready:.1f} s")
                report(name, phase(base, token, args))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
    return 0
