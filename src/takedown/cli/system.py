"""`takedown init` and `takedown bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from takedown.cli import common


def init() -> None:
    """Create the database or upgrade it to the current schema."""
    from takedown.store.migrate import head_revision, upgrade

    db = common.database(require_schema=False)
    before, after = upgrade(db)
    if before == after:
        common.console.print(f"{db.url}: schema is current ({after})")
    elif before is None:
        common.console.print(f"{db.url}: created (schema {after})")
    else:
        common.console.print(f"{db.url}: upgraded {before} → {after}")
    assert after == head_revision()


def bench(
    name: str = typer.Argument(..., help="Benchmark name (see bench/)."),
    args: list[str] = typer.Argument(None, help="Arguments for the benchmark."),
) -> None:
    """Run a benchmark from the checkout's bench/ directory (same as python -m bench NAME)."""
    root = Path.cwd()
    if not (root / "bench" / "__main__.py").exists():
        raise common.fail("bench/ not found: run this from a takedown checkout")
    code = subprocess.call([sys.executable, "-m", "bench", name, *(args or [])], cwd=root)
    raise typer.Exit(code)
