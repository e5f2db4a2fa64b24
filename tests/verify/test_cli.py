"""`takedown verify`, `vantage`, `status`, `ledger rebuild` as subprocesses: interruption
(SIGINT, SIGKILL) and restart, two workers on PostgreSQL, status JSON and statement."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.clock import FileClock
from takedown.store.db import Database
from takedown.store.schema import Check, CheckTask

from .fixtures import T0, add_items, add_notice
from .servers import ItemApp, UvicornThread

TAKEDOWN = str(Path(sys.executable).parent / "takedown")


def env_with_clock(tmp_path: Path, when=T0 + timedelta(hours=2)) -> dict[str, str]:
    clock = FileClock(tmp_path / "clock")
    clock.write(when)
    return os.environ | {
        "TAKEDOWN_CLOCK": f"file:{clock.path}",
        "COLUMNS": "200",
    }


def td(db_url: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAKEDOWN, "--db", db_url, *args], capture_output=True, text=True, env=env, timeout=240
    )


def check_counts(db: Database) -> dict[int, int]:
    with db.reading() as s:
        return dict(s.execute(select(Check.item_id, func.count()).group_by(Check.item_id)).all())


def wait_for_checks(db: Database, proc: subprocess.Popen[str], at_least: int) -> int:
    """Poll (bounded) until the running process has written some checks."""
    for _ in range(3000):
        n = sum(check_counts(db).values())
        if n >= at_least or proc.poll() is not None:
            return n
        time.sleep(0.01)
    raise AssertionError("no checks written")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_restarted_finishes_without_duplicates(
    db: Database, db_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    env = env_with_clock(tmp_path)
    with UvicornThread(ItemApp({k: "removed" for k in range(0, 400, 3)}, delay=0.01)) as srv:
        ids = add_items(db, 400, f"http://127.0.0.1:{srv.port}")
        proc = subprocess.Popen(
            [TAKEDOWN, "--db", db_url, "verify", "--concurrency", "4", "--only-loopback", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        written = wait_for_checks(db, proc, 20)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, (out, err)  # it was stopped, not finished
        if sig == signal.SIGINT:
            assert proc.returncode == 130
        partial = check_counts(db)
        assert written <= sum(partial.values()) < 400
        assert set(partial.values()) == {1}
        again = td(db_url, "verify", "--concurrency", "16", "--only-loopback", "--json", env=env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed"] and summary["finished"]
    assert summary["checked"] == 400 - sum(partial.values())
    assert check_counts(db) == {i: 1 for i in ids}
    with db.reading() as s:
        assert s.scalar(select(func.count()).where(CheckTask.done_at.is_(None))) == 0


@pytest.mark.postgres
def test_two_workers_share_one_round(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the worker test runs on PostgreSQL")
    db = Database(db_url)
    env = env_with_clock(tmp_path)
    app = ItemApp(delay=0.002)
    try:
        with UvicornThread(app) as srv:
            ids = add_items(db, 2000, f"http://127.0.0.1:{srv.port}")
            cmd = [
                TAKEDOWN,
                "--db",
                db_url,
                "verify",
                "--worker",
                "--concurrency",
                "20",
                "--only-loopback",
                "--json",
            ]
            procs = [
                subprocess.Popen(
                    cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                for _ in range(2)
            ]
            outs = [p.communicate(timeout=240) for p in procs]
        for p, (_out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        summaries = [json.loads(out) for out, _ in outs]
        assert len({s["round"] for s in summaries}) == 1  # both joined the same round
        assert sum(s["checked"] for s in summaries) == 2000
        assert all(s["checked"] > 0 for s in summaries)  # the work was shared
        assert check_counts(db) == {i: 1 for i in ids}
        assert sum(app.hits.values()) == 2000  # and no URL was fetched twice
    finally:
        db.close()


def test_vantage_and_status_commands(db: Database, db_url: str, tmp_path: Path) -> None:
    env = env_with_clock(tmp_path)
    assert td(db_url, "vantage", "add", "msk-1", "--country", "ru", env=env).returncode == 0
    r = td(
        db_url,
        "vantage",
        "add",
        "de-1",
        "--country",
        "DE",
        "--abroad",
        "--source",
        "127.0.0.1",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    dup = td(db_url, "vantage", "add", "msk-1", env=env)
    assert dup.returncode == 1 and "exists" in dup.stderr
    bad = td(db_url, "vantage", "add", "x", "--source", "not-an-ip", env=env)
    assert bad.returncode == 1 and "--source" in bad.stderr
    listed = json.loads(td(db_url, "vantage", "list", "--json", env=env).stdout)
    assert [(v["name"], v["country"], v["in_country"]) for v in listed] == [
        ("de-1", "DE", False),
        ("msk-1", "RU", True),
    ]
    with UvicornThread(ItemApp({k: "removed" for k in range(7)} | {7: "withheld"})) as srv:
        ids = add_items(db, 10, f"http://127.0.0.1:{srv.port}")
        add_notice(db, ids, T0)
        abroad = td(db_url, "verify", "--vantage", "de-1", "--only-loopback", "--json", env=env)
        assert abroad.returncode == 0, abroad.stderr
        r = td(db_url, "verify", "--vantage", "msk-1", "--only-loopback", "--json", env=env)
        assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdicts"] == {"removed": 7, "restricted": 1, "available": 2}
    st = td(db_url, "status", "--platform", "twitter", "--json", env=env)
    assert st.returncode == 0, st.stderr
    fig = json.loads(st.stdout)
    assert list(fig) == sorted(
        [
            "platform",
            "as_of",
            "flagged",
            "removed",
            "restricted",
            "claimed",
            "remaining",
            "overdue",
            "removed_share",
            "on_time_share",
            "ttr_median_h",
            "ttr_p90_h",
            "reuploads_found",
            "reuploads_removed",
            "reuploads_open",
        ]
    )
    assert (fig["flagged"], fig["removed"], fig["restricted"], fig["remaining"]) == (10, 7, 1, 2)
    assert fig["removed_share"] == 0.8 and fig["ttr_median_h"] == 2.0 and fig["overdue"] == 0
    # 30 hours later the two that remain are overdue; the past is still answerable
    later = env_with_clock(tmp_path, T0 + timedelta(hours=30))
    fig2 = json.loads(td(db_url, "status", "--platform", "twitter", "--json", env=later).stdout)
    assert (fig2["overdue"], fig2["on_time_share"]) == (2, 0.8)
    past = td(
        db_url,
        "status",
        "--platform",
        "twitter",
        "--at",
        "2021-03-10T10:00:00Z",
        "--json",
        env=later,
    )
    assert json.loads(past.stdout)["removed"] == 0
    text = td(db_url, "status", "--platform", "twitter", "--statement", env=later).stdout
    assert text.startswith("As of 11 March 2021, twitter has removed or withheld 80% of the 10 ")
    assert "2 remain, 2 of them past their deadline" in text
    bad_at = td(db_url, "status", "--at", "yesterday", env=env)
    assert bad_at.returncode == 1 and "--at" in bad_at.stderr
    table = td(db_url, "status", "--by-category", env=env)
    assert table.returncode == 0 and "suicide" in table.stdout
    rb = td(db_url, "ledger", "rebuild", "--json", env=later)
    assert rb.returncode == 0 and json.loads(rb.stdout) == {"changed": 0}
