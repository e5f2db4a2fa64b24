"""The CLI's conventions (README, "Scripting"), on the installed command in real processes:
``--version``; global options before or after the command; ``--json`` on every command
that changes something, printing what it changed with its id and state; arrays for
listings (``--jsonl`` for streams); one time format (RFC 3339, UTC, seconds) in JSON and
tables; tab-separated tables with whole values when stdout is not a terminal; choices
shown as choices; an example in every command's help; exit codes 0, 1 (one line on
stderr) and 2 (usage) for each failure named in the README."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import typer

from takedown.cli import app
from takedown.clock import FileClock
from takedown.store.db import Database
from takedown.store.migrate import upgrade

NOW = datetime(2021, 3, 10, tzinfo=UTC)
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
LONG_URL = "https://twitter.com/" + "a" * 300 + "/status/1"  # far past 80 columns
BOX = set("│┃━─┏┓┗┛╭╮╰╯┡┩")


class Cli:
    """The installed ``takedown`` against one SQLite file, at a fixed simulated time."""

    def __init__(self, tmp: Path) -> None:
        self.db = str(tmp / "takedown.db")
        clock = FileClock(tmp / "clock")
        clock.write(NOW)
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("TAKEDOWN_DB", "TAKEDOWN_TOKEN")
        }
        self.env |= {"TAKEDOWN_CLOCK": f"file:{clock.path}", "COLUMNS": "200"}
        self.tmp = tmp

    def __call__(
        self, *args: str, db: bool = True, token: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env | ({"TAKEDOWN_TOKEN": token} if token else {})
        return subprocess.run(
            [sys.executable, "-m", "takedown", *args, *(("--db", self.db) if db else ())],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            timeout=120,
        )

    def json(self, *args: str, token: str | None = None) -> Any:
        r = self(*args, "--json", token=token)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    db = Database(str(tmp_path / "takedown.db"))
    upgrade(db)
    db.close()
    yield Cli(tmp_path)


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _add(cli: Cli, target: str, *extra: str) -> dict[str, Any]:
    return cli.json(  # type: ignore[no-any-return]
        "registry", "add", target, "--category", "drugs", "--basis", "149-FZ art. 15.1",
        "--decision", "D-1", *extra,
    )  # fmt: skip


# ------------------------------------------------------------------ version, global options


def test_version_prints_the_package_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "takedown", "--version"], capture_output=True, text=True
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, f"takedown {version('takedown')}\n", "")


@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_db_is_global_before_or_after_the_command(cli: Cli, where: str) -> None:
    _add(cli, "https://a.example/1")
    args = {
        "before": ["--db", cli.db, "registry", "list", "--json"],
        "after": ["registry", "list", "--json", "--db", cli.db],
        "between": ["registry", "--db", cli.db, "list", "--json"],
    }[where]
    r = cli(*args, db=False)
    assert r.returncode == 0, r.stderr
    assert [i["target"] for i in json.loads(r.stdout)] == ["https://a.example/1"]


def test_token_is_global_after_the_command(cli: Cli) -> None:
    r = cli("staff", "add", "x", "--role", "analyst", "--no-password", "--token", "tdr_nope")
    assert r.returncode == 1  # acting as the token's account, which does not exist
    _one_error_line(r)
    assert cli.json("staff", "list") == []


# ------------------------------------------------------------------ JSON shapes and times


def test_listings_are_arrays_and_jsonl_streams(cli: Cli) -> None:
    _add(cli, "https://a.example/1")
    _add(cli, "https://b.example/2")
    listed = cli.json("registry", "list")
    assert isinstance(listed, list) and [i["target"] for i in listed] == [
        "https://a.example/1",
        "https://b.example/2",
    ]
    r = cli("registry", "list", "--jsonl")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()] == listed
    for command in (["platform", "list"], ["measures", "list"], ["staff", "list"],
                    ["notices", "list"], ["appeals", "list"], ["vantage", "list"],
                    ["api-token", "list"], ["audit", "list"]):  # fmt: skip
        assert isinstance(cli.json(*command), list), command
    r = cli("registry", "list", "--json", "--jsonl")
    assert r.returncode == 2


def test_times_are_rfc3339_utc_seconds_in_json_and_tables(cli: Cli) -> None:
    item = _add(cli, "https://a.example/1")
    assert item["listed_at"] == "2021-03-10T00:00:00Z"
    cli.json("platform", "add", "twitter", "--name", "Twitter", "--host", "twitter.com=text")
    measure = cli.json(
        "measures", "add", "twitter", "--action", "throttle", "--rate-kbps", "128",
        "--decision", "D-7", "--reason", "order",
    )  # fmt: skip
    assert measure["proposed_at"] == "2021-03-10T00:00:00Z"
    assert cli.json("status", "--platform", "twitter")["as_of"] == "2021-03-10T00:00:00Z"
    for row in cli.json("audit", "list"):
        assert RFC3339.match(row["at"]), row
    shown = cli("registry", "show", str(item["id"]))
    assert "listed_at\t2021-03-10T00:00:00Z\n" in shown.stdout
    listed = cli("measures", "list").stdout.splitlines()
    header, row = listed[0].split("\t"), listed[1].split("\t")
    assert row[header.index("since")] == "2021-03-10T00:00:00Z"
    staff = cli("staff", "list").stdout  # no accounts yet: the header alone
    assert staff.splitlines()[0].startswith("name\troles\tcreated")


def test_status_statement_with_json_has_the_statement(cli: Cli) -> None:
    cli.json("platform", "add", "twitter", "--name", "Twitter", "--host", "twitter.com=text")
    one = cli.json("status", "--platform", "twitter", "--statement")
    assert "twitter" in one["statement"] and one["platform"] == "twitter"
    every = cli.json("status", "--statement")
    assert isinstance(every, list) and all(row["statement"] for row in every)


# ------------------------------------------------------------------ --json on mutations


def test_mutations_print_what_they_changed_with_ids_and_states(cli: Cli) -> None:
    item = _add(cli, LONG_URL, "--decision-date", "2021-02-01")
    assert (item["created"], item["state"], item["target"]) == (True, "open", LONG_URL)
    assert isinstance(item["id"], int)
    again = _add(cli, LONG_URL)
    assert (again["id"], again["created"]) == (item["id"], False)
    delisted = cli.json("registry", "delist", str(item["id"]), "--decision", "D-9")
    assert (delisted["id"], delisted["state"], delisted["delist_decision"]) == (
        item["id"],
        "delisted",
        "D-9",
    )

    platform = cli.json(
        "platform", "add", "twitter", "--name", "Twitter", "--host", "twitter.com=text"
    )
    assert platform["slug"] == "twitter" and platform["id"] and platform["webhook_secret"]
    token = cli.json("platform", "token", "twitter")
    assert token["platform"] == "twitter" and token["token"]
    obligation = cli.json(
        "platform", "obligation", "twitter", "data-localisation", "--state", "violating",
        "--decision", "D-3",
    )  # fmt: skip
    assert obligation["id"] and obligation["state"] == "violating"

    block = cli.json(
        "measures", "add", "twitter", "--action", "block", "--decision", "D-4", "--reason", "r"
    )
    assert block["state"] == "proposed" and block["needs_approval"] is True
    throttle = cli.json(
        "measures", "add", "twitter", "--action", "throttle", "--rate-kbps", "128",
        "--decision", "D-5", "--reason", "r",
    )  # fmt: skip
    assert throttle["id"] != block["id"] and throttle["action"] == "throttle"

    approver = cli.json("staff", "add", "petrova", "--role", "approver", "--no-password")
    assert (approver["name"], approver["roles"], approver["active"]) == (
        "petrova",
        ["approver"],
        True,
    )
    issued = cli.json("api-token", "issue", "petrova")
    assert issued["name"] == "petrova" and issued["token"]
    approved = cli.json("measures", "approve", str(block["id"]), token=issued["token"])
    assert (approved["id"], approved["state"]) == (block["id"], "active")
    lifted = cli.json("measures", "lift", str(block["id"]), "--decision", "D-6")
    assert (lifted["id"], lifted["state"], lifted["lift_decision"]) == (
        block["id"],
        "lifted",
        "D-6",
    )

    reset = cli(
        "staff",
        "reset",
        "petrova",
        "--password-stdin",
        "--json",
        stdin="correct horse battery staple\n",
    )
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["has_password"] is True
    revoked = cli.json("api-token", "revoke", "petrova")
    assert revoked["name"] == "petrova" and revoked["revoked"] == 1
    disabled = cli.json("staff", "disable", "petrova")
    assert disabled["active"] is False and disabled["disabled_at"] == "2021-03-10T00:00:00Z"

    vantage = cli.json("vantage", "add", "msk-1", "--country", "RU")
    assert vantage["name"] == "msk-1" and vantage["id"]
    sent = cli.json("notices", "send")
    assert isinstance(sent, list)
    assert cli.json("ledger", "rebuild")["changed"] >= 0
    assert cli.json("init")["schema"]


def test_import_and_sync_json(cli: Cli, tmp_path: Path) -> None:
    summary = cli.json(
        "registry", "import", "examples/registers/rkn-sample.csv", "--format", "rkn-csv",
        "--basis", "149-FZ",
    )  # fmt: skip
    assert (summary["mode"], summary["committed"], summary["added"]) == ("import", True, 50)
    assert RFC3339.match(summary["updated_at"])


# ------------------------------------------------------------------ tables on a pipe


def test_piped_tables_are_tab_separated_with_whole_values(cli: Cli) -> None:
    _add(cli, LONG_URL)
    r = cli("registry", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "target", "category", "platform", "decision", "state"]
    assert lines[1].split("\t") == ["1", LONG_URL, "drugs", "", "D-1", "open"]
    assert not BOX & set(r.stdout)
    status = cli("status").stdout.splitlines()
    assert status[0].startswith("platform\tflagged\tremoved")


def test_terminal_tables_fold_long_values_and_keep_times_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from takedown.cli import common

    out = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=out, force_terminal=True, width=60))
    common.print_table(("target", "since"), [(LONG_URL, NOW)])
    text = out.getvalue()
    assert "…" not in text and "2021-03-10T00:00:00Z" in text
    first = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") == 3]
    assert LONG_URL in "".join(first)  # folded over lines, whole


def test_piped_cells_escape_tabs_and_newlines() -> None:
    from takedown.cli.common import _tsv

    assert _tsv("a\tb\nc\\d") == "a\\tb\\nc\\\\d"


# ------------------------------------------------------------------ exit codes


def test_a_taken_port_is_one_line_and_exit_1(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", "--port", str(port), "--no-worker")
    assert r.returncode == 1
    assert _one_error_line(r) == f"error: 127.0.0.1:{port} is in use"


@pytest.mark.parametrize("command", [["serve"], ["sim", "platform"]])
@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_bad_port_is_a_usage_error(cli: Cli, command: list[str], port: str) -> None:
    r = cli(*command, "--port", port)
    assert r.returncode == 2, r.stderr
    assert "--port" in r.stderr and "Traceback" not in r.stderr


def test_a_refused_database_connection_has_its_own_message(cli: Cli) -> None:
    r = cli("--db", "postgresql+psycopg://postgres@127.0.0.1:1/x", "status", db=False)
    assert r.returncode == 1
    line = _one_error_line(r)
    assert "cannot connect to the database" in line and "127.0.0.1:1" in line
    assert "refused" in line.lower() and "takedown init" not in line
    r = cli("init", "--db", str(cli.tmp / "no-such-dir" / "x.db"), db=False)
    assert r.returncode == 1
    assert "cannot connect to the database" in _one_error_line(r)


def test_a_database_without_the_schema_says_init(cli: Cli) -> None:
    r = cli("status", "--db", str(cli.tmp / "empty.db"), db=False)
    assert r.returncode == 1
    assert "takedown init" in _one_error_line(r)


def test_measure_against_an_unreachable_host_names_it(cli: Cli) -> None:
    port = _free_port()
    for extra in ([], ["--json"]):
        r = cli("measure", f"http://127.0.0.1:{port}/x", "--timeout", "2", *extra, db=False)
        assert r.returncode == 1
        assert f"127.0.0.1:{port}" in _one_error_line(r)


def test_import_needs_a_legal_basis_unless_the_format_states_one(cli: Cli) -> None:
    sample = "examples/registers/rkn-sample.csv"
    r = cli("registry", "import", sample, "--format", "rkn-csv")
    assert r.returncode == 2
    assert "--basis" in _one_error_line(r)
    r = cli("registry", "sync", sample, "--format", "rkn-csv", "--source", "rkn")
    assert r.returncode == 2 and "--basis" in r.stderr
    assert cli.json("registry", "list") == []  # nothing was invented
    rows = cli.tmp / "rows.jsonl"
    rows.write_text(
        json.dumps({"target": "https://c.example/1", "category": "drugs", "basis": "149-FZ",
                    "decision": "D-2"}) + "\n"
    )  # fmt: skip
    assert cli.json("registry", "import", str(rows), "--format", "jsonl")["added"] == 1
    assert [i["basis"] for i in cli.json("registry", "list")] == ["149-FZ"]
    rows.write_text(json.dumps({"target": "https://d.example/1", "decision": "D-3"}) + "\n")
    r = cli("registry", "import", str(rows), "--format", "jsonl")
    assert r.returncode == 1 and "basis" in r.stderr  # a row without one is refused


def test_a_bad_choice_is_a_usage_error(cli: Cli) -> None:
    r = cli("measures", "add", "twitter", "--action", "ban", "--decision", "D", "--reason", "r")
    assert r.returncode == 2 and "'ban' is not one of" in r.stderr


# ------------------------------------------------------------------ help


def _commands() -> Iterator[tuple[str, Any]]:
    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, command

    yield from walk(typer.main.get_command(app), "takedown")


def test_every_command_has_an_example_in_its_help() -> None:
    commands = dict(_commands())
    assert len(commands) > 50
    missing = [path for path, c in commands.items() if "Example" not in (c.help or "")]
    assert missing == []
    top = subprocess.run(
        [sys.executable, "-m", "takedown", "registry", "import", "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert "Example: takedown registry import" in top.stdout


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        (["registry", "import"], "rkn-csv|rkn-xml|citizenlab|jsonl|csv"),
        (["registry", "sync"], "rkn-csv|rkn-xml|citizenlab|jsonl"),
        (["registry", "export"], "jsonl|csv|rkn-csv|rpz|nft|hosts"),
        (["measures", "add"], "throttle|block"),
        (["appeals", "decide"], "upheld|reversed"),
        (["appeals", "list"], "open|upheld|reversed"),
        (["platform", "obligation"], "compliant|violating"),
        (["staff", "add"], "analyst|approver|auditor|admin"),
        (["enforce"], "connect|socks5|transparent"),
    ],
)
def test_choices_show_as_choices(command: list[str], choices: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "takedown", *command, "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "250"},
    )
    assert r.returncode == 0 and choices in r.stdout, r.stdout


def test_the_cli_choices_are_the_librarys() -> None:
    """The choices are spelled out for --help; they must stay what the library accepts."""
    from takedown.accounts import ROLES
    from takedown.appeals import AppealState
    from takedown.cli import appeals, enforce, measures, registry, staff
    from takedown.enforce.handshake import Mode
    from takedown.enforce.relay import ThrottleScope
    from takedown.model import MeasureAction
    from takedown.registry.formats import READERS
    from takedown.registry.service import EXPORT_FORMATS

    def choices(function: Any, name: str) -> set[str]:
        return set(get_args(get_type_hints(function)[name]))

    assert set(get_args(registry.ImportFormat)) == set(READERS)
    assert set(get_args(registry.SyncFormat)) < set(READERS)
    assert set(get_args(registry.ExportFormat)) == set(EXPORT_FORMATS)
    assert tuple(staff.Role) == ROLES
    assert choices(enforce.enforce, "mode") == set(Mode)
    assert choices(enforce.enforce, "throttle_scope") == set(ThrottleScope)
    assert choices(measures.measures_add, "action") == set(MeasureAction)
    assert choices(appeals.appeals_decide, "outcome") == set(AppealState) - {"open"}
    assert choices(appeals.appeals_list, "state") == set(AppealState)
