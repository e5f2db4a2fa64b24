"""The ``takedown`` command: one Typer app; each command group lives in its own module.

Commands only parse arguments, call the library and print; errors become one line on
stderr and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import sys

import typer

from takedown.cli import (
    api_token,
    appeals,
    audit,
    common,
    demo,
    enforce,
    feed,
    ledger,
    measure,
    measures,
    notices,
    operator,
    platform,
    policy,
    registry,
    rules,
    serve,
    sim,
    staff,
    status,
    system,
    vantage,
    verify,
)

app = typer.Typer(
    name="takedown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=common.RootGroup,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"takedown {version('takedown')}")
        raise typer.Exit(0)


@app.callback()
def root(
    db: str = typer.Option(
        None,
        "--db",
        envvar="TAKEDOWN_DB",
        help="Database: a SQLAlchemy URL or a SQLite file path (default: takedown.db). "
        "A global option: before or after the command.",
    ),
    token: str = typer.Option(
        None,
        "--token",
        envvar="TAKEDOWN_TOKEN",
        help="Act as the staff account of this API token (default: the local bootstrap, "
        "the OS user, which may manage accounts but never approve or decide). "
        "A global option: before or after the command.",
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        expose_value=False,
        help="Print the version (takedown X.Y.Z) and exit.",
    ),
) -> None:
    """Register, notices, verification, ledger, enforcement ladder and directive feed.

    Example: takedown --db postgresql+psycopg://takedown@db/takedown status --json
    """
    common.STATE.db = db
    common.STATE.token = token


app.command("demo")(demo.demo)
app.add_typer(registry.app, name="registry")
app.add_typer(rules.app, name="rules")
app.add_typer(platform.app, name="platform")
app.add_typer(staff.app, name="staff")
app.add_typer(api_token.app, name="api-token")
app.add_typer(notices.app, name="notices")
app.command("serve")(serve.serve)
app.command("verify")(verify.verify)
app.add_typer(vantage.app, name="vantage")
app.command("status")(status.status)
app.add_typer(ledger.app, name="ledger")
app.add_typer(policy.app, name="policy")
app.add_typer(measures.app, name="measures")
app.add_typer(appeals.app, name="appeals")
app.add_typer(feed.app, name="feed")
app.add_typer(operator.app, name="operator")
app.add_typer(operator.fleet_app, name="operators")
app.command("enforce")(enforce.enforce)
app.command("measure")(measure.measure)
app.add_typer(sim.app, name="sim")
app.command("init")(system.init)
app.add_typer(audit.app, name="audit")
app.command("bench", context_settings={"allow_extra_args": True})(system.bench)


def main() -> None:
    """Console entry point."""
    sys.exit(common.run(app))
