"""`takedown api-token`: issue, list and revoke regulator staff tokens for ``/api/…``."""

from __future__ import annotations

import typer

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
    """List staff tokens (names, roles, dates; never the tokens).

    Example: takedown api-token list --json
    """
    from takedown.accounts import list_tokens

    rows = list_tokens(common.database())
    if as_json:
        common.print_json([r.as_json() for r in rows])
        return
    common.print_table(
        ("name", "roles", "created", "revoked"),
        ((r.name, ", ".join(r.roles), r.created_at, r.revoked_at or "-") for r in rows),
    )


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="Whose active token to revoke."),
    as_json: bool = typer.Option(False, "--json", help="Machine output: what was revoked."),
) -> None:
    """Revoke a staff member's active token.

    Example: takedown api-token revoke alice --json
    """
    from takedown.accounts import normalise_name, revoke_token

    now = common.now()
    count = revoke_token(common.database(), name, now=now, actor=common.principal())
    if as_json:
        common.print_json({"name": normalise_name(name), "revoked": count, "revoked_at": now})
        return
    common.console.print(f"revoked the token of {name}", highlight=False)
