"""The ``takedown`` command: one Typer app; each command group lives in its own module.

Commands only parse arguments, call the library and print; errors become one line on
stderr and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import sys

import typer

from takedown.cli import api_tokens as api_tokens_cli
from takedown.cli import common
from takedown.cli import demo as demo_cli
from takedown.cli import enforce as enforce_cli
from takedown.cli import feed as feed_cli
from takedown.cli import ledger as ledger_cli
from takedown.cli import measure as measure_cli
from takedown.cli import measures as measures_cli
from takedown.cli import notices as notices_cli
from takedown.cli import platform as platform_cli
from takedown.cli import policy as policy_cli
from takedown.cli import registry as registry_cli
from takedown.cli import rules as rules_cli
from takedown.cli import sim as sim_cli
from takedown.cli import status as status_cli
from takedown.cli import system as system_cli
from takedown.cli import verify as verify_cli

app = typer.Typer(
    name="takedown",
    help="Register, notices, verification, ledger, enforcement ladder and directive feed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    db: str = typer.Option(
        None,
        "--db",
        envvar="TAKEDOWN_DB",
        help="Database: a SQLAlchemy URL or a SQLite file path (default: takedown.db).",
    ),
) -> None:
    common.STATE.db = db


demo_cli.register(app)
registry_cli.register(app)
rules_cli.register(app)
platform_cli.register(app)
api_tokens_cli.register(app)
notices_cli.register(app)
verify_cli.register(app)
app.command("status")(status_cli.status)
app.add_typer(ledger_cli.app, name="ledger")
policy_cli.register(app)
measures_cli.register(app)
feed_cli.register(app)
enforce_cli.register(app)
measure_cli.register(app)
sim_cli.register(app)
system_cli.register(app)


def main() -> None:
    """Console entry point."""
    sys.exit(common.run(app))
