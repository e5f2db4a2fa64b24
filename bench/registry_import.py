"""Import a generated rkn-csv dump through the real path vs. a bare sqlite3 executemany.

    python -m bench registry_import [--rows 1000000] [--quick]

Generates the dump (mixed domains, wildcards, URLs, IPv4/IPv6 addresses and prefixes,
multi-value cells, quoted authorities), then in the same run:
  1. `takedown registry import` in a child process on a fresh SQLite file (peak RSS too);
  2. the floor: the same rows, parsed beforehand, inserted with sqlite3 executemany into
     the items table of another freshly initialised takedown database (same columns,
     indexes and PRAGMAs, one transaction);
  3. `takedown registry export --format rpz` of the imported register.

Wall and CPU seconds are both printed: on a loaded machine the CPU ratio is the steadier.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import run_takedown
from takedown.model import ItemRecord
from takedown.registry.formats import ReadDefaults, RowError
from takedown.registry.formats.rkn_csv import read
from takedown.store.schema import target_key

WORDS = [
    "news",
    "shop",
    "media",
    "forum",
    "info",
    "blog",
    "club",
    "games",
    "torrent",
    "pharm",
    "casino",
    "video",
    "photo",
    "chat",
    "mail",
    "пример",
    "новости",
    "магазин",
]
TLDS = ["com", "net", "org", "ru", "info", "рф", "su", "biz"]


def _domain(rng: random.Random, i: int) -> str:
    return f"{rng.choice(WORDS)}{i}.{rng.choice(TLDS)}"


def generate(path: Path, rows: int, seed: int = 2021) -> None:
    """Write a deterministic rkn-csv dump of ``rows`` rows."""
    rng = random.Random(seed)
    with path.open("w", encoding="cp1251", newline="\n") as out:
        out.write("Updated: 2021-03-10 12:00:00 +0300\n")
        for i in range(rows):
            kind = rng.random()
            ips = domains = urls = ""
            if kind < 0.35:
                domains = _domain(rng, i)
                if rng.random() < 0.2:
                    domains += f" | *.{_domain(rng, i + rows)}"
            elif kind < 0.75:
                d = _domain(rng, i)
                urls = f"https://{d}/p/{i}?id={rng.randrange(10**6)}"
                if rng.random() < 0.2:
                    urls += f" | http://{d}/a|b/{i}"
                domains = d if rng.random() < 0.3 else ""
            elif kind < 0.9:
                a, b, c = rng.randrange(1, 223), rng.randrange(256), rng.randrange(256)
                ips = f"{a}.{b}.{c}.{rng.randrange(1, 255)}"
                if rng.random() < 0.3:
                    ips += f"|{rng.randrange(1, 223)}.{b}.{c}.0/24"
            else:
                ips = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/64"
                if rng.random() < 0.5:
                    ips += f" | 2001:db8::{rng.randrange(65536):x}"
            authority = '"Роскомнадзор; отдел"' if rng.random() < 0.1 else "Роскомнадзор"
            decision = f"27-31-2021/Ид{i // 7}-21"
            day = 1 + i % 28
            out.write(f"{ips};{domains};{urls};{authority};{decision};2021-02-{day:02d}\n")


def bare_insert(db_path: Path, rows: list[tuple]) -> tuple[float, float]:
    """The floor: executemany of pre-parsed tuples into the items table of a freshly
    initialised takedown database (same columns, indexes and constraints), with the PRAGMAs
    takedown sets and one transaction. Returns (wall, CPU) seconds."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    wall, cpu = time.perf_counter(), time.process_time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO items (target, target_key, kind, host, platform_id, category, basis, "
        "decision_ref, authority, decision_date, listed_at, source, flags, state, state_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (target_key, decision_ref) WHERE delisted_at IS NULL DO NOTHING",
        rows,
    )
    conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return wall, cpu


def preparse(path: Path) -> list[tuple]:
    now = datetime(2021, 3, 10, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    out = []
    with path.open("rb") as fh:
        for entry in read(fh, source=str(path), defaults=ReadDefaults(basis="149-FZ")):
            if isinstance(entry, RowError):
                continue
            out.extend(_item_row(rec, now) for rec in entry.items())
    return out


def _item_row(rec: ItemRecord, now: str) -> tuple:
    d = rec.decision
    return (
        rec.target.value,
        target_key(rec.target.value),
        rec.target.kind.value,
        rec.target.host,
        None,
        rec.category,
        rec.basis,
        d.reference,
        d.authority,
        d.date,
        now,
        rec.source,
        "",
        "open",
        now,
    )


def bench_import(rows: int, work: Path) -> None:
    """Generate a dump of ``rows`` rows in ``work``, import and export it, and time the floor."""
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    dump = work / "dump.csv"
    t = time.perf_counter()
    generate(dump, rows)
    print(
        f"generated {rows:,} rows ({dump.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - t:.1f} s"
    )

    db, bare_db = work / "takedown.db", work / "bare.db"
    run_takedown(["--db", str(db), "init"])
    run_takedown(["--db", str(bare_db), "init"])  # the floor writes into the very same schema
    t_import, cpu_import, rss_kb, out = run_takedown(
        [
            "--db",
            str(db),
            "registry",
            "import",
            str(dump),
            "--format",
            "rkn-csv",
            "--basis",
            "149-FZ",
            "--json",
        ]
    )
    summary = json.loads(out)
    print(
        f"takedown registry import: {t_import:.1f} s (CPU {cpu_import:.1f} s), "
        f"peak RSS {rss_kb / 1024:.0f} MiB; {summary['entries']:,} entries, "
        f"{summary['items_added']:,} items inserted, {summary['duplicates']:,} duplicates, "
        f"{summary['rejected']:,} rejected"
    )

    t = time.perf_counter()
    parsed = preparse(dump)
    t_parse = time.perf_counter() - t
    t_bare, cpu_bare = bare_insert(bare_db, parsed)
    print(
        f"bare sqlite3 executemany of {len(parsed):,} pre-parsed rows: {t_bare:.1f} s "
        f"(CPU {cpu_bare:.1f} s; parsing them beforehand took {t_parse:.1f} s)"
    )
    print(
        f"ratio import / bare insert: {t_import / t_bare:.2f}x wall, "
        f"{cpu_import / cpu_bare:.2f}x CPU (goal <= 3x)"
    )

    t_rpz, cpu_rpz, _, _ = run_takedown(
        ["--db", str(db), "registry", "export", "--format", "rpz", "-o", str(work / "out.rpz")]
    )
    print(
        f"takedown registry export --format rpz: {t_rpz:.1f} s (CPU {cpu_rpz:.1f} s, "
        f"{(work / 'out.rpz').stat().st_size / 1e6:.0f} MB)"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench registry_import")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:  # removed however it ends
        bench_import(rows, Path(tmp))
    return 0
