"""`takedown platform obligation` feeds the ladder: the LinkedIn case as one rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from takedown.store.db import Database
from tests import staff

REPO = Path(__file__).resolve().parents[2]


def _run(db_url: str, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAKEDOWN_TOKEN": token, "TAKEDOWN_CLOCK": ""}
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_violating_data_localisation_proposes_a_block(db_url: str) -> None:
    ladder = str(REPO / "examples" / "ladders" / "ru-2021.toml")
    assert (
        _run(
            db_url,
            "platform",
            "add",
            "linkedin",
            "--name",
            "LinkedIn",
            "--notice-url",
            "http://127.0.0.1:9/notices",
            "--host",
            "linkedin.com=text",
        ).returncode
        == 0
    )
    before = _run(db_url, "policy", "eval", "--ladder", ladder, "--json")
    assert before.returncode == 0, before.stderr
    assert "localisation-block" not in before.stdout
    r = _run(
        db_url,
        "platform",
        "obligation",
        "linkedin",
        "data-localisation",
        "--state",
        "violating",
        "--decision",
        "Moscow Tagansky court 2016-08-04",
    )
    assert r.returncode == 0, r.stderr
    r = _run(
        db_url,
        "platform",
        "obligation",
        "linkedin",
        "data-localisation",
        "--state",
        "sometimes",
        "--decision",
        "x",
    )
    assert r.returncode != 0 and "state" in r.stderr
    r = _run(db_url, "policy", "eval", "--ladder", ladder, "--apply", "--json")
    assert r.returncode == 0, r.stderr
    assert "localisation-block" in r.stdout
    listed = json.loads(_run(db_url, "measures", "list", "--json").stdout)
    (block,) = [m for m in listed if m["action"] == "block"]
    assert block["state"] == "proposed"
    mid = str(block["id"])
    db = Database(db_url)
    analyst = staff.token(db, "analyst", "analyst", now=datetime.now(UTC))
    head = staff.token(db, "head", "approver", now=datetime.now(UTC))
    db.close()
    refused = _run(db_url, "measures", "approve", mid, token=analyst)
    assert refused.returncode == 1 and "needs the approver role" in refused.stderr
    assert _run(db_url, "measures", "approve", mid, token=head).returncode == 0
    listed = json.loads(_run(db_url, "measures", "list", "--json").stdout)
    assert [m["state"] for m in listed if m["action"] == "block"] == ["active"]
