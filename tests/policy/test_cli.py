"""The policy and measures commands, run as a user would (a real process per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from takedown.cli.platform import obligation as platform_obligation
from takedown.store.db import Database
from takedown.store.schema import Event, Measure, Obligation
from tests import staff
from tests.policy.dbdata import add_platform, load_stubborn

ROOT = Path(__file__).resolve().parents[2]
RU_2021 = ROOT / "examples" / "ladders" / "ru-2021.toml"
T0 = datetime(2021, 3, 1, tzinfo=UTC)


def takedown(
    db_url: str,
    *args: str,
    token: str | None = None,
    at: str = "2021-03-10T00:00:00Z",
    tmp: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TAKEDOWN_TOKEN", None)
    if token is not None:
        env["TAKEDOWN_TOKEN"] = token
    if tmp is not None:
        clock = tmp / "clock"
        clock.write_text(at)
        env["TAKEDOWN_CLOCK"] = f"file:{clock}"
    return subprocess.run(
        [sys.executable, "-c", "from takedown.cli import main; main()", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def counts(db_url: str) -> tuple[int, int]:
    db = Database(db_url)
    with db.reading() as s:
        out = (
            s.scalar(select(func.count()).select_from(Measure)) or 0,
            s.scalar(select(func.count()).select_from(Event)) or 0,
        )
    db.close()
    return out


def test_policy_check(tmp_path: Path, db_url: str) -> None:
    ok = takedown(db_url, "policy", "check", str(RU_2021))
    assert ok.returncode == 0 and "ok: ladder ru-2021@" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(RU_2021.read_text().replace("fixed = 50", "fixed = 150"))
    res = takedown(db_url, "policy", "check", str(bad))
    assert res.returncode == 1
    assert f"{bad}: rule 'slowdown' field 'scope'.fixed" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_apply_with_refused_ladder_changes_nothing(tmp_path: Path, db_url: str) -> None:
    db = Database(db_url)
    load_stubborn(db)
    db.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(RU_2021.read_text().replace('replaces = ["slowdown"]\n', "", 1))
    res = takedown(db_url, "policy", "eval", "--apply", "--ladder", str(bad), tmp=tmp_path)
    assert res.returncode == 1 and "contradicts rule 'slowdown'" in res.stderr
    assert counts(db_url) == (0, 0)
    # the same with the good ladder applies the slowdown
    res = takedown(
        db_url, "policy", "eval", "--apply", "--json", "--ladder", str(RU_2021), tmp=tmp_path
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [p["kind"] for p in out["proposals"]] == ["start"] and out["applied"]
    assert counts(db_url) == (1, 1)


def test_eval_without_apply_only_proposes(tmp_path: Path, db_url: str) -> None:
    db = Database(db_url)
    load_stubborn(db)
    db.close()
    res = takedown(
        db_url, "policy", "eval", "--ladder", str(RU_2021), "--at", "2021-03-10T00:00:00Z", "--json"
    )
    assert res.returncode == 0, res.stderr
    (p,) = json.loads(res.stdout)["proposals"]
    assert (p["rule"], p["rate_kbps"], p["scope"]) == (
        "slowdown",
        128,
        {"mobile": 100.0, "fixed": 50.0},
    )
    assert counts(db_url) == (0, 0)


def test_measures_add_approve_list_explain_lift(tmp_path: Path, db_url: str) -> None:
    db = Database(db_url)
    add_platform(db, "linkedin", {"linkedin.com": "text"})
    alice = staff.token(db, "alice", "analyst", "approver", now=T0)
    bob = staff.token(db, "bob", "approver", now=T0)
    db.close()
    res = takedown(
        db_url,
        "measures",
        "add",
        "linkedin",
        "--action",
        "block",
        "--decision",
        "court 2-3024/16",
        "--reason",
        "data localisation",
        "--mobile",
        "100",
        "--fixed",
        "100",
        token=alice,
        tmp=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    res = takedown(db_url, "measures", "approve", "1", token=alice, tmp=tmp_path)
    assert res.returncode == 1 and "alice proposed measure 1; four eyes" in res.stderr
    res = takedown(db_url, "measures", "approve", "1", tmp=tmp_path)  # the bootstrap
    assert res.returncode == 1 and "local bootstrap" in res.stderr
    res = takedown(db_url, "measures", "approve", "1", "--json", token=bob, tmp=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["state"] == "active"
    listed = json.loads(takedown(db_url, "measures", "list", "--json", tmp=tmp_path).stdout)
    assert [(m["id"], m["state"], m["action"]) for m in listed] == [(1, "active", "block")]
    info = json.loads(takedown(db_url, "measures", "explain", "1", "--json").stdout)
    assert info["approvals"][0]["by"] == "bob"
    assert info["decision_ref"] == "court 2-3024/16"
    text = takedown(db_url, "measures", "explain", "1").stdout
    assert "approved by bob" in text and "decision court 2-3024/16" in text
    res = takedown(db_url, "measures", "lift", "1", "--decision", "court 2", tmp=tmp_path)
    assert res.returncode == 0
    listed = json.loads(takedown(db_url, "measures", "list", "--json", tmp=tmp_path).stdout)
    assert listed[0]["state"] == "lifted"
    res = takedown(
        db_url,
        "measures",
        "add",
        "linkedin",
        "--action",
        "throttle",
        "--decision",
        "x",
        "--reason",
        "y",
        tmp=tmp_path,
    )
    assert res.returncode == 1 and "--rate-kbps" in res.stderr


def test_platform_obligation_command(tmp_path: Path, db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from takedown.cli import common

    db = Database(db_url)
    add_platform(db, "linkedin")
    app = typer.Typer()
    app.command("platform-obligation")(platform_obligation)
    app.command("noop")(lambda: None)  # a second command keeps the name as a subcommand
    monkeypatch.setattr(common.STATE, "db", db_url)
    clock = tmp_path / "clock"
    clock.write_text("2016-11-17T00:00:00Z")
    monkeypatch.setenv("TAKEDOWN_CLOCK", f"file:{clock}")
    res = CliRunner().invoke(
        app,
        [
            "platform-obligation",
            "linkedin",
            "data-localisation",
            "--state",
            "violating",
            "--decision",
            "court 2-3024/16",
        ],
    )
    assert res.exit_code == 0, res.output
    with db.reading() as s:
        (o,) = s.scalars(select(Obligation)).all()
    assert (o.kind, o.state, o.decision) == ("data-localisation", "violating", "court 2-3024/16")
    db.close()


def test_simulate_writes_nothing(tmp_path: Path, db_url: str) -> None:
    db = Database(db_url)
    load_stubborn(db)
    db.close()
    res = takedown(
        db_url,
        "policy",
        "simulate",
        str(RU_2021),
        "--from",
        "2021-03-01",
        "--to",
        "2021-04-15",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    steps = json.loads(res.stdout)["platforms"]["stubborn"]
    happened = [(s["at"][:10], p["kind"], p["rule"]) for s in steps for p in s["proposals"]]
    assert happened == [
        ("2021-03-10", "start", "slowdown"),
        ("2021-04-05", "renew", "slowdown"),
        ("2021-04-09", "start", "block"),
    ]
    assert counts(db_url) == (0, 0)
