"""The benchmarks' own plumbing: the data they build is what the store would hold, and a
run leaves nothing behind (a full registry_sync run writes about 2 GB to TMPDIR)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from bench import verify
from takedown.store.db import Database
from takedown.store.schema import target_key


def test_status_bench_items_carry_the_stores_target_keys(db: Database) -> None:
    verify.fill_items(db, 40, checks_per_item=1)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT target, target_key FROM items")).all()
        checks = conn.execute(text("SELECT count(*) FROM checks")).scalar_one()
    assert len(rows) == 40 and checks == 40
    assert all(key == target_key(target) for target, key in rows)


def test_registry_sync_bench_removes_its_files(tmp_path: Path) -> None:
    work = tmp_path / "tmp"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "registry_sync",
            "--entries",
            "3000",
            "--backend",
            "sqlite",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(work)},
        cwd=Path(__file__).resolve().parent.parent,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3,000 entries" in proc.stdout and "export hosts" in proc.stdout
    assert list(work.iterdir()) == []
