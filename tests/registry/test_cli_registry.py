"""The `takedown` command as a user runs it: exit codes, one-line errors, --json."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(db_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def _listed(db_url: str) -> list[dict[str, object]]:
    r = run(db_url, "registry", "list", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


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
    rows = json.loads(r.stdout)
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
    assert json.loads(run(db_url, "registry", "list", "--json").stdout) == []
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
    # a mask entry (twitter.com, *.twimg.com) and an IP entry: 2 entries, 3 targets
    assert (summary["entries"], summary["targets"], summary["rejected"]) == (2, 3, 1)
    assert (summary["added"], summary["items_added"]) == (2, 3)
    assert Path(summary["report"]).read_text(encoding="utf-8") == (
        f"{dump}:4: ips: invalid IP address '300.1.1.1'\t300.1.1.1;;;Роскомнадзор;X;2021-02-03\n"
    )
    rows = _listed(db_url)
    assert sorted(row["target"] for row in rows) == ["*.twimg.com", "203.0.113.0/24", "twitter.com"]


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
    assert r.returncode == 2 and "'yaml' is not one of" in r.stderr  # a usage error


def test_uninitialised_database_says_init(tmp_path: Path) -> None:
    r = run(str(tmp_path / "new.db"), "registry", "list")
    assert r.returncode == 1 and "takedown init" in r.stderr


def test_import_prints_entries_and_targets(db_url: str, dump: Path) -> None:
    r = run(db_url, "registry", "import", str(dump), "--format", "rkn-csv", "--basis", "149-FZ")
    assert r.returncode == 0, r.stderr
    assert "read 2 entries (3 targets); 0 rejected" in r.stdout
    assert "2 entries were added (3 items)" in r.stdout


def test_import_json_counts_entries_and_targets_separately(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "dump.csv"
    f.write_bytes(
        "Updated: 2021-03-01 09:00:00 +0300\n"
        "192.0.2.1|192.0.2.2;a.example;http://a.example/1 | http://a.example/2;A;D-1;2021-02-01\n"
        "192.0.2.3|192.0.2.4;;;A;D-2;\n"
        "192.0.2.3|192.0.2.4;;;A;D-2;\n".encode("cp1251")
    )
    args = ("registry", "import", str(f), "--format", "rkn-csv", "--basis", "b", "--json")
    r = run(db_url, *args)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["entries"] == 3  # valid entries read, the repeated one included
    assert summary["targets"] == 6  # 2 URLs (the URL row's IPs and domain are hints) + 2 + 2
    assert (summary["added"], summary["items_added"], summary["duplicates"]) == (2, 4, 1)
    assert (summary["mode"], summary["source"], summary["committed"]) == ("import", "default", True)
    assert summary["updated_at"] == "2021-03-01T06:00:00Z"  # the dump's +03:00, in UTC
    again = json.loads(run(db_url, *args).stdout)
    assert (again["entries"], again["added"], again["items_added"], again["unchanged"]) == (
        3,
        0,
        0,
        2,
    )


def test_empty_authority_and_decision_take_the_defaults(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "dump.csv"
    f.write_bytes(
        "Updated: 2021-03-01 09:00:00 +0300\n"
        ";a.example;;Суд;D-1;2021-02-01\n"
        ";b.example;;;;\n".encode("cp1251")
    )
    r = run(db_url, "registry", "import", str(f), "--format", "rkn-csv", "--basis", "b")
    assert r.returncode == 1
    assert f"{f}:3: empty decision reference" in r.stderr and "nothing imported" in r.stderr
    assert json.loads(run(db_url, "registry", "list", "--json").stdout) == []
    r = run(
        db_url,
        "registry",
        "import",
        str(f),
        "--format",
        "rkn-csv",
        "--basis",
        "b",
        "--authority",
        "Роскомнадзор",
        "--decision",
        "D-0",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 2
    rows = _listed(db_url)
    assert [(row["target"], row["authority"], row["decision"]) for row in rows] == [
        ("a.example", "Суд", "D-1"),  # the file's own are kept
        ("b.example", "Роскомнадзор", "D-0"),
    ]


YOUTUBE = "74.125.196.132;youtube.com;http://youtube.com/watch?v=abc;court;2-123/2021;2021-03-01"


@pytest.fixture
def youtube(tmp_path: Path) -> Path:
    f = tmp_path / "youtube.csv"
    f.write_bytes(
        "Updated: 2021-03-01 09:00:00 +0300\n"
        f"{YOUTUBE}\n"
        ";casino.example;;court;2-124/2021;2021-03-01\n"
        ";;http://youtube.com/watch?v=xyz;court;2-125/2021;2021-03-01\n".encode("cp1251")
    )
    return f


def _events(db_url: str, kind: str) -> list[dict[str, object]]:
    r = run(db_url, "audit", "list", "--json", "--type", kind)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_url_entry_never_blocks_its_host_or_address(db_url: str, youtube: Path) -> None:
    r = run(db_url, "registry", "import", str(youtube), "--format", "rkn-csv", "--basis", "b")
    assert r.returncode == 0, r.stderr
    r = run(db_url, "registry", "export", "--format", "rpz")
    assert r.returncode == 0, r.stderr
    assert "casino.example CNAME ." in r.stdout
    assert "youtube.com" not in r.stdout
    r = run(db_url, "registry", "export", "--format", "hosts")
    assert r.returncode == 0, r.stderr
    assert "casino.example" in r.stdout and "youtube.com" not in r.stdout
    r = run(db_url, "registry", "export", "--format", "nft")
    assert r.returncode == 0, r.stderr
    assert "74.125.196.132" not in r.stdout
    assert _events(db_url, "registry.export.widened") == []


def test_widen_url_hosts_adds_them_with_a_collateral_report(
    db_url: str, youtube: Path, tmp_path: Path
) -> None:
    r = run(db_url, "registry", "import", str(youtube), "--format", "rkn-csv", "--basis", "b")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "widened.rpz"
    r = run(
        db_url,
        "registry",
        "export",
        "--format",
        "rpz",
        "--widen-url-hosts",
        "court order 2-123/2021 names the site",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    zone = out.read_text()
    assert "youtube.com CNAME ." in zone and "casino.example CNAME ." in zone
    # youtube.com is the host of two URL entries: blocking it hits the other one too
    assert "widened youtube.com: 1 other entry" in r.stderr
    r = run(db_url, "registry", "export", "--format", "nft", "--widen-url-hosts", "hint IPs")
    assert r.returncode == 0, r.stderr
    assert "74.125.196.132" in r.stdout
    assert "widened 74.125.196.132: 0 other entries" in r.stderr
    events = _events(db_url, "registry.export.widened")
    payloads = sorted((e["payload"] for e in events), key=lambda p: p["format"])  # type: ignore[index]
    assert payloads == [
        {
            "format": "nft",
            "reason": "hint IPs",
            "added": 1,
            "report": ["74.125.196.132: 0 other entries"],
        },
        {
            "format": "rpz",
            "reason": "court order 2-123/2021 names the site",
            "added": 1,
            "report": ["youtube.com: 1 other entry"],
        },
    ]
    assert all(e["actor"] == f"local:{getpass.getuser()}" for e in events)  # the bootstrap
    r = run(db_url, "audit", "verify", "--json")
    assert json.loads(r.stdout)["ok"] is True
