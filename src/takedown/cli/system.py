"""`takedown init` and `takedown bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from takedown.cli import common


def init(
    json_out: bool = typer.Option(
        False, "--json", help="Machine output: the database and its schema before and after."
    ),
) -> None:
    """Create the database or upgrade it to the current schema.

    Example: takedown --db postgresql+psycopg://takedown@127.0.0.1/takedown init
    """
    from takedown.store.migrate import head_revision, upgrade

    db = common.database(require_schema=False)
    before, after = upgrade(db)
    assert after == head_revision()
    if json_out:
        common.print_json({"database": db.url, "schema_before": before, "schema": after})
    elif before == after:
        common.console.print(f"{db.url}: schema is current ({after})")
    elif before is None:
        common.console.print(f"{db.url}: created (schema {after})")
    else:
        common.console.print(f"{db.url}: upgraded {before} → {after}")


def bench(
    name: str = typer.Argument(..., help="Benchmark name (see bench/)."),
    args: list[str] = typer.Argument(None, help="Arguments for the benchmark."),
) -> None:
    """Run a benchmark from the checkout's bench/ directory (same as python -m bench NAME).

    Example: takedown bench enforce
    """
    root = Path.cwd()
    if not (root / "bench" / "__main__.py").exists():
        raise common.fail("bench/ not found: run this from a takedown checkout")
    code = subprocess.call([sys.executable, "-m", "bench", name, *(args or [])], cwd=root)
    raise typer.Exit(code)
