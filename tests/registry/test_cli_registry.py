"""The `takedown` command as a user runs it: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(db_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAKEDOWN_ACTOR": "analyst", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    f = tmp_path / "dump.csv"
    f.write_bytes(
        "Updated: 2021-03-01 09:00:00 +0300\n"
        ";twitter.com|*.twimg.com;;Роскомнадзор;27-31-2021/Ид1;2021-02-01\n"
        "203.0.113.0/24;;;Роскомнадзор;27-31-2021/Ид2;2021-02-02\n".encode("cp1251")
    )
    return f


def test_add_list_show_delist(db_url: str) -> None:
    r = run(
        db_url,
        "registry",
        "add",
        "https://twitter.com/a/status/1",
        "--category",
        "drugs",
        "--basis",
        "149-FZ art. 15.1",
        "--decision",
        "D-1",
        "--decision-date",
        "2021-02-01",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    item = json.loads(r.stdout)
    assert item["created"] is True
    r = run(db_url, "registry", "list", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["target"] for row in rows] == ["https://twitter.com/a/status/1"]
    r = run(db_url, "registry", "show", str(item["id"]), "--json")
    assert json.loads(r.stdout)["decision_date"] == "2021-02-01"
    assert run(db_url, "registry", "delist", str(item["id"]), "--decision", "D-9").returncode == 0
    r = run(db_url, "registry", "delist", str(item["id"]), "--decision", "D-9")
    assert r.returncode == 1 and "already delisted" in r.stderr
    r = run(db_url, "audit", "verify", "--json")
    assert json.loads(r.stdout) == {"ok": True, "events": 2, "first_broken": None, "problem": None}


def test_errors_are_one_line_with_exit_codes(db_url: str) -> None:
    r = run(
        db_url,
        "registry",
        "add",
        "x.example",
        "--category",
        "spam",
        "--basis",
        "b",
        "--decision",
        "d",
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "known: csam" in r.stderr
    r = run(db_url, "registry", "add", "x.example", "--basis", "b", "--decision", "d")
    assert r.returncode == 2  # usage: missing --category
    r = run(db_url, "registry", "show", "12345")
    assert r.returncode == 1 and "no item 12345" in r.stderr


def test_import_failure_changes_nothing_then_skip_invalid(db_url: str, dump: Path) -> None:
    with dump.open("ab") as fh:
        fh.write("300.1.1.1;;;Роскомнадзор;X;2021-02-03\n".encode("cp1251"))
    r = run(db_url, "registry", "import", str(dump), "--format", "rkn-csv", "--basis", "149-FZ")
    assert r.returncode == 1
    assert f"{dump}:4:" in r.stderr and "nothing imported" in r.stderr
    assert run(db_url, "registry", "list", "--json").stdout == ""
    r = run(
        db_url,
        "registry",
        "import",
        str(dump),
        "--format",
        "rkn-csv",
        "--basis",
        "149-FZ",
        "--skip-invalid",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["inserted"], summary["rejected"]) == (3, 1)
    assert Path(summary["report"]).read_text().startswith(f"{dump}:4:")


def test_export_formats_to_file(db_url: str, dump: Path, tmp_path: Path) -> None:
    assert (
        run(
            db_url, "registry", "import", str(dump), "--format", "rkn-csv", "--basis", "149-FZ"
        ).returncode
        == 0
    )
    for fmt in ("jsonl", "csv", "rkn-csv", "rpz", "nft", "hosts"):
        out = tmp_path / f"out.{fmt}"
        r = run(db_url, "registry", "export", "--format", fmt, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size > 0
    rpz = (tmp_path / "out.rpz").read_text()
    assert "twitter.com CNAME ." in rpz and "*.twimg.com CNAME ." in rpz
    assert "203.0.113.0/24" in (tmp_path / "out.nft").read_text()
    r = run(db_url, "registry", "export", "--format", "yaml")
    assert r.returncode == 1 and "unknown format 'yaml'" in r.stderr


def test_uninitialised_database_says_init(tmp_path: Path) -> None:
    r = run(str(tmp_path / "new.db"), "registry", "list")
    assert r.returncode == 1 and "takedown init" in r.stderr
