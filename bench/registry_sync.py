"""Sync and export a national-size register, on SQLite and PostgreSQL.

    python -m bench registry_sync [--entries 1500000] [--quick] [--backend sqlite|postgresql]

Generates an rkn-csv dump shaped like the real register (about 45% URL entries with 2-3
hint IPs and their domain, 45% domain, 8% IP, 2% mask entries; multi-URL rows, quoted
authorities, Cyrillic), and a second snapshot of it with 1% of the entries changed
(0.5% re-resolved hints, 0.25% gone, 0.25% new). Then on each backend, each step in a
child process (wall, CPU, peak RSS of that process; CPU and peak include the process a
sync forks to read the file, not the PostgreSQL server's own time):
  1. `takedown registry sync` of the first snapshot into an empty database;
  2. `takedown registry sync` of the second (the daily case);
  3. `takedown registry export` in rkn-csv, rpz, nft and hosts.
The goals (issue #14) are the baseline each figure is divided by: first sync 60 s and
1 GiB, re-sync 20 s, each export 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from bench.common import drop_pg, pg_db, run_takedown

GOALS = {"first sync": 60.0, "re-sync 1%": 20.0, "export": 10.0}
RSS_GOAL_MIB = 1024
WORDS = ["news", "shop", "media", "forum", "casino", "video", "pharm", "пример", "новости"]
TLDS = ["com", "net", "org", "ru", "info", "рф", "su"]
HEADER = "Updated: {stamp}\n"


def _row(rng: random.Random, i: int, variant: int = 0) -> str:
    """Entry ``i`` of the register (``variant`` re-resolves a URL entry's hint IPs)."""
    domain = f"{WORDS[i % len(WORDS)]}{i}.{TLDS[i % len(TLDS)]}"
    kind = rng.random()
    ips = domains = urls = ""
    if kind < 0.45:
        count = 1 + (rng.random() < 0.15)
        urls = " | ".join(
            f"https://{domain}/v/{i}/{k}?id={rng.randrange(10**6)}" for k in range(count)
        )
        domains = domain
        ips = "|".join(
            f"{(i * 7 + k + variant) % 223 + 1}.{i % 256}.{(i >> 8) % 256}.{k + 1}"
            for k in range(2 + (rng.random() < 0.5))
        )
    elif kind < 0.90:
        domains = domain
        if rng.random() < 0.3:
            ips = f"{i % 223 + 1}.{(i >> 8) % 256}.{i % 256}.9"
    elif kind < 0.98:
        ips = f"{i % 223 + 1}.{(i >> 8) % 256}.{(i >> 16) % 256}.{i % 250 + 1}"
        if rng.random() < 0.2:
            ips += f" | 2001:db8:{i % 65536:x}::/48"
    else:
        domains = f"*.{domain}"
    authority = '"Роскомнадзор; отдел"' if rng.random() < 0.1 else "Генпрокуратура"
    return f"{ips};{domains};{urls};{authority};27-31-2021/Ид{i}-21;2021-02-{1 + i % 28:02d}\n"


def generate(path: Path, entries: int, *, changed: float = 0.0, stamp: str) -> None:
    """Write a snapshot; with ``changed`` (a share) some entries are re-resolved, some gone
    and as many new ones added, half and a quarter and a quarter of that share."""
    rng = random.Random(14)
    pick = random.Random(15)
    with path.open("w", encoding="cp1251", newline="\n") as out:
        out.write(HEADER.format(stamp=stamp))
        for i in range(entries):
            state = random.Random(i).random() if changed else 1.0  # the same entries each run
            if state < changed / 4:
                _row(rng, i)  # keep the generator in step
                continue  # gone
            out.write(_row(rng, i, variant=1 if state < changed * 3 / 4 else 0))
        for j in range(int(entries * changed / 4)):
            out.write(_row(pick, entries + j))


def _run(label: str, args: list[str], results: dict[str, tuple[float, float, int]]) -> str:
    wall, cpu, rss, out = run_takedown(args)
    results[label] = (wall, cpu, rss)
    goal = GOALS.get(label, GOALS["export"])
    print(
        f"  {label:<18} {wall:7.1f} s (CPU {cpu:6.1f} s, peak RSS {rss / 1024:5.0f} MiB)"
        f"  = {wall / goal:.2f} x the {goal:.0f} s goal"
    )
    return out


def bench_backend(name: str, url: str, first: Path, second: Path, work: Path) -> None:
    print(f"{name}:")
    results: dict[str, tuple[float, float, int]] = {}
    run_takedown(["--db", url, "init"])
    common = ["--format", "rkn-csv", "--source", "rkn", "--basis", "149-FZ", "--json"]
    out = _run("first sync", ["--db", url, "registry", "sync", str(first), *common], results)
    summary = json.loads(out)
    print(
        f"    {summary['added']:,} entries, {summary['items_added']:,} items; "
        f"rejected {summary['rejected']}"
    )
    out = _run("re-sync 1%", ["--db", url, "registry", "sync", str(second), *common], results)
    summary = json.loads(out)
    print(
        f"    added {summary['added']:,}, changed {summary['changed']:,}, delisted "
        f"{summary['delisted']:,}, unchanged {summary['unchanged']:,}"
    )
    for fmt in ("rkn-csv", "rpz", "nft", "hosts"):
        target = work / f"{name}.{fmt}"
        _run(
            f"export {fmt}",
            ["--db", url, "registry", "export", "--format", fmt, "-o", str(target)],
            results,
        )
    rss = max(r[2] for r in results.values()) / 1024
    print(f"  peak RSS of any step {rss:.0f} MiB = {rss / RSS_GOAL_MIB:.2f} x the 1 GiB goal")


def bench_all(entries: int, backend: str | None, work: Path) -> None:
    """Generate the two snapshots in ``work`` and bench each backend (or ``backend``)."""
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    first, second = work / "dump-1.csv", work / "dump-2.csv"
    t = time.perf_counter()
    generate(first, entries, stamp="2021-03-10 12:00:00 +0300")
    generate(second, entries, changed=0.01, stamp="2021-03-11 12:00:00 +0300")
    print(
        f"generated two snapshots of {entries:,} entries ({first.stat().st_size / 1e6:.0f} MB "
        f"each) in {time.perf_counter() - t:.1f} s"
    )
    if backend in (None, "sqlite"):
        bench_backend("sqlite", str(work / "takedown.db"), first, second, work)
    if backend in (None, "postgresql"):
        url = pg_db()
        if url is not None:
            try:
                bench_backend("postgresql", url, first, second, work)
            finally:
                drop_pg(url)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench registry_sync")
    parser.add_argument("--entries", type=int, default=1_500_000)
    parser.add_argument("--quick", action="store_true", help="100,000 entries")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], help="one only")
    args = parser.parse_args(argv)
    entries = 100_000 if args.quick else args.entries
    # two dumps and a database at full size (about 2 GB): removed however the run ends
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        bench_all(entries, args.backend, Path(tmp))
    return 0
