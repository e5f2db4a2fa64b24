"""Import a generated rkn-csv dump through the real path vs. a bare sqlite3 executemany.

    python -m bench registry_import [--rows 1000000] [--quick]

Generates the dump (mixed domains, wildcards, URLs, IPv4/IPv6 addresses and prefixes,
multi-value cells, quoted authorities), then in the same run:
  1. `takedown registry import` in a child process on a fresh SQLite file (peak RSS too);
  2. the floor: the same rows, parsed beforehand, inserted with sqlite3 executemany into a
     table of the same shape (same columns, same unique index);
  3. `takedown registry export --format rpz` of the imported register.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from takedown.registry.formats import ReadDefaults, RowError
from takedown.registry.formats.rkn_csv import read

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


def bare_insert(db_path: Path, rows: list[tuple]) -> float:
    """The floor: executemany of pre-parsed tuples into a table of the items' shape."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, target VARCHAR(4000) NOT NULL, "
        "kind VARCHAR(16), host VARCHAR(300), platform_id INTEGER, category VARCHAR(64), "
        "basis TEXT, decision_ref VARCHAR(200), authority VARCHAR(500), decision_date "
        "VARCHAR(10), listed_at DATETIME, delisted_at DATETIME, delist_decision VARCHAR(200), "
        "source VARCHAR(500), flags VARCHAR(200), state VARCHAR(16), state_at DATETIME, "
        "deadline_at DATETIME, CONSTRAINT uq UNIQUE (target, decision_ref))"
    )
    conn.execute("CREATE INDEX ix1 ON items (host)")
    conn.execute("CREATE INDEX ix2 ON items (platform_id)")
    conn.execute("CREATE INDEX ix3 ON items (category)")
    conn.execute("CREATE INDEX ix4 ON items (platform_id, state)")
    start = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO items (target, kind, host, platform_id, category, basis, decision_ref, "
            "authority, decision_date, listed_at, source, flags, state, state_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (target, decision_ref) DO NOTHING",
            rows,
        )
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def preparse(path: Path) -> list[tuple]:
    now = datetime(2021, 3, 10, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    out = []
    with path.open("rb") as fh:
        for rec in read(fh, source=str(path), defaults=ReadDefaults(basis="149-FZ")):
            if isinstance(rec, RowError):
                continue
            d = rec.decision
            out.append(
                (
                    rec.target.value,
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
            )
    return out


def _child(args: list[str]) -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "takedown", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"takedown {' '.join(args)} failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before), proc.stdout.strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench registry_import")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    dump = work / "dump.csv"
    t = time.perf_counter()
    generate(dump, rows)
    print(
        f"generated {rows:,} rows ({dump.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - t:.1f} s"
    )

    db = work / "takedown.db"
    env_db = ["--db", str(db)]
    _child([*env_db, "init"])
    t_import, rss_kb, out = _child(
        [
            *env_db,
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
    print(f"takedown registry import: {t_import:.1f} s, peak RSS {rss_kb / 1024:.0f} MiB")
    print(f"  {out}")

    t = time.perf_counter()
    parsed = preparse(dump)
    t_parse = time.perf_counter() - t
    t_bare = bare_insert(work / "bare.db", parsed)
    print(
        f"bare sqlite3 executemany of {len(parsed):,} pre-parsed rows: {t_bare:.1f} s "
        f"(parsing them beforehand took {t_parse:.1f} s)"
    )
    print(f"ratio import / bare insert: {t_import / t_bare:.2f}x (goal <= 3x)")

    t_rpz, _, _ = _child(
        [*env_db, "registry", "export", "--format", "rpz", "-o", str(work / "out.rpz")]
    )
    print(
        f"takedown registry export --format rpz: {t_rpz:.1f} s "
        f"({(work / 'out.rpz').stat().st_size / 1e6:.0f} MB)"
    )
    for f in work.iterdir():
        f.unlink()
    os.rmdir(work)
    return 0
