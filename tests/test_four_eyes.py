"""Four eyes by account, never by free text: the spellings an attacker tried, refused.

Before accounts, ``measures approve --by`` compared free text: a block proposed by
``alice`` was approved by ``--by Alice``, ``--by ALICE``, ``--by alice<ZWSP>`` and by alice
herself typing ``--by bob``. Now an approval is made by the account of a token, and an
account name is normalised (NFKC, case-folded, no invisible characters) and unique.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from takedown import accounts
from takedown.errors import Conflict, Forbidden, InputError
from takedown.policy import measures
from takedown.store.db import Database
from tests import staff
from tests.policy.dbdata import add_platform

NOW = datetime(2021, 3, 10, tzinfo=UTC)
SPELLINGS = ["Alice", "ALICE", "alice\u200b", "\u200balice", "ａｌｉｃｅ", "alice\u0000", "alice "]


def cli(db_url: str, *args: str, token: str | None = None, stdin: str | None = None):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "TAKEDOWN_TOKEN"}
    if token is not None:
        env["TAKEDOWN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_spelling_of_an_existing_name_is_the_same_name_or_refused(
    db: Database, spelling: str
) -> None:
    staff.account(db, "alice", "analyst", now=NOW)
    try:
        key = accounts.normalise_name(spelling)
    except InputError as exc:
        assert (exc.where == "NAME" and "U+" in str(exc)) or "letters" in str(exc)
        return
    assert key == "alice"
    with pytest.raises(Conflict, match="an account named 'alice' exists"):
        staff.account(db, spelling, "approver", now=NOW)


def test_approving_ones_own_twice_or_a_lifted_measure_is_refused(db: Database) -> None:
    add_platform(db, "twitter", {"twitter.com": "text"})
    alice = staff.account(db, "alice", "analyst", "approver", now=NOW)
    bob = staff.account(db, "bob", "approver", now=NOW)
    carol = staff.account(db, "carol", "analyst", now=NOW)
    mid = measures.add(
        db, "twitter", action="block", decision="D-1", reason="r", now=NOW, actor=alice.label
    )
    with pytest.raises(Forbidden, match="alice proposed measure 1; four eyes"):
        measures.approve(db, mid, alice, NOW)
    with pytest.raises(Forbidden, match=r"carol \(analyst\) may not approve; it needs"):
        measures.approve(db, mid, carol, NOW)
    with pytest.raises(Forbidden, match="local bootstrap"):
        measures.approve(db, mid, accounts.bootstrap("bob"), NOW)  # the OS user named bob
    assert measures.approve(db, mid, bob, NOW).state.value == "active"
    with pytest.raises(Conflict, match="bob already approved measure 1"):
        measures.approve(db, mid, bob, NOW)
    measures.lift(db, mid, "D-2", NOW, alice.label)
    with pytest.raises(Conflict, match="measure 1 is lifted; there is nothing to approve"):
        measures.approve(db, mid, staff.account(db, "dave", "approver", now=NOW), NOW)
    rejected = measures.add(
        db, "twitter", action="block", decision="D-3", reason="r", now=NOW, actor=alice.label
    )
    with pytest.raises(Forbidden, match="four eyes"):
        measures.reject(db, rejected, alice, "mine", NOW)
    with pytest.raises(InputError, match="needs a reason"):
        measures.reject(db, rejected, bob, " ", NOW)
    record = measures.reject(db, rejected, bob, "figures are a week old", NOW)
    assert (record.state.value, record.lift_decision) == (
        "lifted",
        "rejected: figures are a week old",
    )


def test_the_cli_approves_as_the_tokens_account_only(db: Database, db_url: str) -> None:
    add_platform(db, "twitter", {"twitter.com": "text"})
    alice = staff.token(db, "alice", "analyst", "approver", now=NOW)
    bob = staff.token(db, "bob", "approver", now=NOW)
    proposed = cli(
        db_url, "measures", "add", "twitter", "--action", "block", "--decision", "D-1",
        "--reason", "never complied", token=alice,
    )  # fmt: skip
    assert proposed.returncode == 0, proposed.stderr
    # the free-text identity is gone: --by is a usage error, whatever it says
    for by in ["bob", "Alice", "ALICE", "alice\u200b"]:
        r = cli(db_url, "measures", "approve", "1", "--by", by, token=alice)
        assert r.returncode == 2 and "--by" in r.stderr
    own = cli(db_url, "measures", "approve", "1", token=alice)
    assert own.returncode == 1
    assert "alice proposed measure 1; four eyes" in own.stderr
    assert len(own.stderr.strip().splitlines()) == 1
    local = cli(db_url, "measures", "approve", "1")
    assert local.returncode == 1 and "local bootstrap" in local.stderr
    forged = cli(db_url, "measures", "approve", "1", token=alice + "x")
    assert forged.returncode == 1 and "invalid token" in forged.stderr
    for spelling in SPELLINGS[:3]:  # nobody can make a second "alice" to approve with
        r = cli(db_url, "staff", "add", spelling, "--role", "approver", "--no-password")
        assert r.returncode == 1, spelling
    ok = cli(db_url, "--token", bob, "measures", "approve", "1", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["state"] == "active"
    twice = cli(db_url, "measures", "approve", "1", "--token", bob)  # global option after
    assert twice.returncode == 1 and "bob already approved measure 1" in twice.stderr
    explained = json.loads(cli(db_url, "measures", "explain", "1", "--json").stdout)
    assert [a["by"] for a in explained["approvals"]] == ["bob"]


def test_staff_cli_passwords_from_stdin_never_echoed(db_url: str, tmp_path: Path) -> None:
    assert cli(db_url, "init").returncode == 0
    secret = "correct horse battery staple"
    r = cli(
        db_url, "staff", "add", "Petrova", "--role", "approver", "--role", "analyst",
        "--password-stdin", "--json", stdin=secret + "\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["name"], info["roles"], info["has_password"]) == (
        "petrova",
        ["analyst", "approver"],
        True,
    )
    short = cli(db_url, "staff", "reset", "petrova", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12" in short.stderr
    no_tty = cli(db_url, "staff", "reset", "petrova", stdin="")
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr
    db = Database(db_url)
    with db.reading() as s:
        assert accounts.verify_login(s, "PETROVA", secret).name == "petrova"
    assert cli(db_url, "staff", "disable", "petrova").returncode == 0
    with db.reading() as s, pytest.raises(Exception, match="wrong username or password"):
        accounts.verify_login(s, "petrova", secret)
    log = cli(db_url, "audit", "list", "--json")
    assert secret not in log.stdout + log.stderr + r.stdout + r.stderr
    db.close()
