"""`takedown status` and `takedown ledger rebuild` as subprocesses: they render
``ledger.status`` and run ``ledger.rebuild``, nothing of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from takedown import ledger
from takedown.cli.common import plain
from takedown.clock import FileClock
from takedown.store.db import Database
from takedown.store.schema import Item

from .scenario import T0, projected_columns, scenario

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
NOW = T0 + timedelta(hours=60)


def td(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clock = FileClock(tmp_path / "clock")
    clock.write(NOW)
    env = os.environ | {
        "TAKEDOWN_CLOCK": f"file:{clock.path}",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [TAKEDOWN, "--db", db_url, *args], capture_output=True, text=True, env=env, timeout=240
    )


def test_status_prints_ledger_status(db: Database, db_url: str, tmp_path: Path) -> None:
    scenario(db)
    one = td(db_url, tmp_path, "status", "--platform", "twitter", "--json")
    assert one.returncode == 0, one.stderr
    # the library's document, with every time in the CLI's one format (RFC 3339, UTC, seconds)
    assert json.loads(one.stdout) == plain(ledger.status(db, NOW, platform="twitter").as_json())
    assert json.loads(one.stdout)["as_of"] == "2021-03-12T21:00:00Z"
    past = td(db_url, tmp_path, "status", "--at", "2021-03-10T12:00:00Z", "--json")
    expected = plain(ledger.status(db, NOW, at=T0 + timedelta(hours=3)).as_json())
    assert json.loads(past.stdout) == expected and isinstance(expected, list)
    text = td(db_url, tmp_path, "status", "--platform", "twitter", "--statement").stdout
    assert text.split() == ledger.status(db, NOW, platform="twitter").statements()[0].split()
    table = td(db_url, tmp_path, "status", "--by-category")
    assert table.returncode == 0 and "drugs" in table.stdout and "suicide" in table.stdout
    unknown = td(db_url, tmp_path, "status", "--platform", "nope")
    assert unknown.returncode != 0 and "nope" in unknown.stderr


def test_ledger_rebuild_command(db: Database, db_url: str, tmp_path: Path) -> None:
    scenario(db)
    before = projected_columns(db)
    with db.session() as s:
        s.execute(update(Item).values(state="open", state_at=None, deadline_at=None))
    rb = td(db_url, tmp_path, "ledger", "rebuild", "--json")
    assert rb.returncode == 0, rb.stderr
    assert json.loads(rb.stdout) == {"changed": len(before)}
    assert projected_columns(db) == before
    again = td(db_url, tmp_path, "ledger", "rebuild")
    assert again.returncode == 0 and "0 items changed" in again.stdout
