"""Global options (``--db``) go before or after the command, on the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from takedown.cli import app
from takedown.model import Decision, ItemRecord
from takedown.registry.service import add_item
from takedown.registry.targets import parse_target
from takedown.store.db import Database
from takedown.store.migrate import upgrade

NOW = datetime(2021, 3, 10, tzinfo=UTC)


def _database(path: Path, target: str) -> str:
    db = Database(str(path))
    upgrade(db)
    record = ItemRecord(parse_target(target), "drugs", "149-FZ", Decision("D-1"))
    add_item(db, record, now=NOW, actor="analyst")
    db.close()
    return str(path)


@pytest.fixture
def two_dbs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two initialised SQLite files, each with one item that tells them apart."""
    yield (
        _database(tmp_path / "a.db", "https://a.example/1"),
        _database(tmp_path / "b.db", "https://b.example/1"),
    )


def _targets(output: str) -> list[str]:
    return [item["target"] for item in json.loads(output)]


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"TAKEDOWN_DB": "", **(env or {})})


@pytest.mark.parametrize(
    "argv",
    [
        ["--db", "{a}", "registry", "list", "--json"],
        ["registry", "list", "--json", "--db", "{a}"],
        ["registry", "list", "--db", "{a}", "--json"],
        ["registry", "--db", "{a}", "list", "--json"],
        ["registry", "list", "--json", "--db={a}"],
    ],
)
def test_db_before_or_after_the_command(two_dbs: tuple[str, str], argv: list[str]) -> None:
    a, _ = two_dbs
    res = invoke(*(arg.format(a=a) for arg in argv))
    assert res.exit_code == 0, res.output
    assert _targets(res.stdout) == ["https://a.example/1"]


def test_db_after_the_command_overrides_the_environment(two_dbs: tuple[str, str]) -> None:
    a, b = two_dbs
    res = invoke("registry", "list", "--json", "--db", b, env={"TAKEDOWN_DB": a})
    assert res.exit_code == 0, res.output
    assert _targets(res.stdout) == ["https://b.example/1"]
    res = invoke("registry", "list", "--json", env={"TAKEDOWN_DB": a})
    assert _targets(res.stdout) == ["https://a.example/1"]


def test_the_same_db_twice_is_fine_two_different_ones_are_a_usage_error(
    two_dbs: tuple[str, str],
) -> None:
    a, b = two_dbs
    res = invoke("--db", a, "registry", "list", "--json", "--db", a)
    assert res.exit_code == 0 and _targets(res.stdout) == ["https://a.example/1"]
    res = invoke("--db", a, "registry", "list", "--json", "--db", b)
    assert res.exit_code == 2 and "--db given twice, as" in res.output
    res = invoke("registry", "--db", a, "list", "--json", "--db", b)
    assert res.exit_code == 2 and "--db given twice" in res.output


def test_a_command_with_arguments_takes_db_anywhere(two_dbs: tuple[str, str]) -> None:
    a, _ = two_dbs
    res = invoke("registry", "show", "1", "--db", a, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["target"] == "https://a.example/1"


def test_help_shows_db_once_at_the_top() -> None:
    top = invoke("--help")
    assert top.exit_code == 0 and "--db" in top.output and "after the command" in top.output
    sub = invoke("registry", "list", "--help")
    assert sub.exit_code == 0 and "--db" not in sub.output


def test_the_installed_command_takes_db_after_the_command(two_dbs: tuple[str, str]) -> None:
    _, b = two_dbs
    env = {k: v for k, v in os.environ.items() if k != "TAKEDOWN_DB"}
    r = subprocess.run(
        [sys.executable, "-m", "takedown", "registry", "list", "--json", "--db", b],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert _targets(r.stdout) == ["https://b.example/1"]
