"""`takedown staff`: add, list, disable staff accounts and reset their passwords."""

from __future__ import annotations

import sys
from enum import StrEnum

import typer

from takedown.cli import common

app = typer.Typer(
    help="Staff accounts (console logins and API tokens): add, list, disable, reset.",
    no_args_is_help=True,
)

ROLE_HELP = "A role; repeat for several."


class Role(StrEnum):  # accounts.ROLES, as choices (Typer takes no list of Literal)
    ANALYST = "analyst"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ADMIN = "admin"


PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from standard input (for scripts)."
)
JSON = typer.Option(False, "--json", help="Machine output: the account as changed.")


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice at a terminal prompt."""
    from takedown.errors import InputError

    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for a password on", where="--password-stdin")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def _print(info, as_json: bool, verb: str) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        common.print_json(info.as_json())
    else:
        roles = ", ".join(info.roles)
        common.console.print(f"{verb} {info.name} ({roles})", highlight=False)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The account's name (stored NFKC, case-folded)."),
    role: list[Role] = typer.Option(..., "--role", help=ROLE_HELP),
    password_stdin: bool = PASSWORD_STDIN,
    no_password: bool = typer.Option(
        False, "--no-password", help="No console login: API token only."
    ),
    as_json: bool = JSON,
) -> None:
    """Add a staff account.

    Example: echo "$PW" | takedown staff add petrova --role approver --password-stdin
    """
    from takedown.accounts import add_account, check_roles, normalise_name

    who = common.principal()
    roles = [r.value for r in role]
    normalise_name(name), check_roles(roles)  # refused before a password is asked for
    password = None if no_password else read_password(password_stdin)
    info = add_account(
        common.database(), name, roles=roles, password=password, now=common.now(), actor=who
    )
    _print(info, as_json, "added")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """List staff accounts (never their passwords). Example: takedown staff list --json"""
    from takedown.accounts import list_accounts

    rows = list_accounts(common.database())
    if as_json:
        common.print_json([r.as_json() for r in rows])
        return
    common.print_table(
        ("name", "roles", "created", "by", "password", "disabled"),
        (
            (r.name, ", ".join(r.roles), r.created_at, r.created_by,
             "set" if r.has_password else "-", r.disabled_at or "-")
            for r in rows
        ),
    )  # fmt: skip


@app.command("disable")
def disable(
    name: str = typer.Argument(..., help="The account to disable."), as_json: bool = JSON
) -> None:
    """Disable an account: its logins, sessions and tokens stop working.

    Example: takedown staff disable petrova
    """
    from takedown.accounts import disable_account

    info = disable_account(common.database(), name, now=common.now(), actor=common.principal())
    _print(info, as_json, "disabled")


@app.command("reset")
def reset(
    name: str = typer.Argument(..., help="Whose password to set."),
    password_stdin: bool = PASSWORD_STDIN,
    as_json: bool = JSON,
) -> None:
    """Set an account's password; its console sessions end.

    Example: echo "$PW" | takedown staff reset petrova --password-stdin
    """
    from takedown.accounts import reset_password

    who = common.principal()
    password = read_password(password_stdin)
    info = reset_password(common.database(), name, password=password, now=common.now(), actor=who)
    _print(info, as_json, "password set for")
