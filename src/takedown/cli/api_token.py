"""`takedown api-token`: issue, list and revoke regulator staff tokens for ``/api/…``."""

from __future__ import annotations

import typer
from rich.table import Table

from takedown.cli import common

app = typer.Typer(
    help="Staff accounts' API tokens (for /api/… and TAKEDOWN_TOKEN; not the platform API).",
    no_args_is_help=True,
)


@app.command("issue")
def issue(
    name: str = typer.Argument(..., help="The staff account (see `takedown staff add`)."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Issue a token for an account and print it once (only its SHA-256 is stored).

    Example: takedown api-token issue alice
    """
    from takedown.accounts import issue_token, normalise_name

    token = issue_token(common.database(), name, now=common.now(), actor=common.principal())
    name = normalise_name(name)
    if as_json:
        common.print_json({"name": name, "token": token})
        return
    common.err_console.print(f"token for {name}; shown once, keep it safe:")
    print(token)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """List staff tokens (names, roles, dates; never the tokens)."""
    from takedown.accounts import list_tokens

    rows = list_tokens(common.database())
    if as_json:
        common.print_json([r.as_json() for r in rows])
        return
    table = Table("name", "roles", "created", "revoked")
    for r in rows:
        table.add_row(
            r.name,
            ", ".join(r.roles),
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "-",
        )
    common.console.print(table)


@app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Whose active token to revoke.")) -> None:
    """Revoke a staff member's active token. Example: takedown api-token revoke alice"""
    from takedown.accounts import revoke_token

    revoke_token(common.database(), name, now=common.now(), actor=common.principal())
    common.console.print(f"revoked the token of {name}")
