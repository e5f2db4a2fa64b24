"""What several benchmarks share: a PostgreSQL database of their own, a timed child run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

from sqlalchemy import create_engine, text

PG = os.environ.get("TAKEDOWN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def pg_db() -> str | None:
    """A new, empty PostgreSQL database's URL, or None (printed why) if there is no server."""
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
    """Drop a database ``pg_db`` made."""
    name = url.rsplit("/", 1)[1]
    eng = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def run_takedown(args: list[str]) -> tuple[float, float, int, str]:
    """Run ``takedown ARGS`` as a child; return (wall s, CPU s, peak RSS KiB of that child,
    stdout). The peak is the child's own: each run is measured in a fresh grandchild."""
    probe = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps([p.returncode, r.ru_utime + r.ru_stime, r.ru_maxrss, p.stdout,"
        " p.stderr]))"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "takedown", *args],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    code, cpu, rss, out, err = json.loads(proc.stdout)
    if code != 0:
        raise SystemExit(f"takedown {' '.join(args)} failed: {err.strip()[-2000:]}")
    return elapsed, cpu, rss, out.strip()
