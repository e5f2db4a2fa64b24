"""`takedown appeals` as a user runs it (a real process), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from takedown import accounts, appeals
from takedown.clock import FileClock
from takedown.store.db import Database
from tests.appeals_support import CONTACT, START, make_world


def takedown(
    db_url: str, clock: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TAKEDOWN_TOKEN"}
    env["TAKEDOWN_CLOCK"] = f"file:{clock}"
    env["COLUMNS"] = "200"
    if token is not None:
        env["TAKEDOWN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-c", "from takedown.cli import main; main()", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_list_show_decide(db: Database, db_url: str, tmp_path: Path) -> None:
    w = make_world(db)
    filed = START + timedelta(days=1)
    on_measure, _ = appeals.file_appeal(
        db, measure_id=w.throttle, appellant="user", grounds="slowed", contact=CONTACT, now=filed
    )
    on_item, _ = appeals.file_appeal(
        db, item_id=w.item, appellant="author", grounds="satire\nnot drugs", now=filed
    )
    clock = tmp_path / "clock"
    FileClock(clock).write(filed + timedelta(days=31))  # both overdue
    root = accounts.bootstrap("root")
    accounts.add_account(db, "erin", roles=["analyst"], password=None, now=START, actor=root)
    erin = accounts.issue_token(db, "erin", now=START, actor=root)

    r = takedown(db_url, clock, "appeals", "list", "--overdue", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [a["id"] for a in rows] == [on_measure.id, on_item.id]
    assert rows[0]["overdue"] is True and rows[0]["contact"] == CONTACT  # staff see it
    r = takedown(db_url, clock, "appeals", "list")
    assert r.returncode == 0 and "overdue" in r.stdout and f"measure {w.throttle}" in r.stdout
    r = takedown(db_url, clock, "appeals", "show", str(on_item.id))
    assert r.returncode == 0 and "satire" in r.stdout and "not drugs" in r.stdout

    # the bootstrap (no token) never decides
    r = takedown(
        db_url,
        clock,
        "appeals",
        "decide",
        str(on_item.id),
        "--outcome",
        "reversed",
        "--reason",
        "x",
    )
    assert r.returncode == 1 and "local bootstrap" in r.stderr
    r = takedown(
        db_url,
        clock,
        "appeals",
        "decide",
        str(on_item.id),
        "--outcome",
        "reversed",
        "--reason",
        "satire is lawful",
        "--json",
        token=erin,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "reversed" and doc["decided_by"] == "erin"
    r = takedown(
        db_url, clock, "appeals", "decide", str(on_item.id), "--outcome", "upheld", "--reason", "y",
        token=erin,
    )  # fmt: skip
    assert r.returncode == 1 and "already decided" in r.stderr
    r = takedown(
        db_url, clock, "appeals", "decide", str(on_measure.id), "--outcome", "maybe",
        "--reason", "y", token=erin,
    )  # fmt: skip
    assert r.returncode == 2 and "outcome" in r.stderr  # not a choice: a usage error
    r = takedown(db_url, clock, "appeals", "list", "--state", "reversed", "--json")
    assert [a["id"] for a in json.loads(r.stdout)] == [on_item.id]
    r = takedown(db_url, clock, "appeals", "show", "9999")
    assert r.returncode == 1 and "no appeal 9999" in r.stderr
