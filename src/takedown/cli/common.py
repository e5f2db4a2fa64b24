"""What every command group shares: the database option, output helpers, error handling."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from typer._click import exceptions as _click_exceptions  # Typer vendors Click
from typer._click.core import Command, Context, Parameter, ParameterSource
from typer.core import TyperGroup

from takedown.errors import TakedownError

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    """The global options' values, one attribute per option, by its parameter name."""

    db: str | None = None
    token: str | None = None


STATE = CliState()

_GIVEN = "takedown.global-options"  # root context meta: global values given on the line


class RootGroup(TyperGroup):
    """The ``takedown`` group: its options are global, and are accepted after any command
    as well as before it (``takedown registry list --db X`` as ``takedown --db X registry
    list``). Each command gets a hidden copy, so its help stays its own and the parser of
    the command decides, as for its own options, what is an option and what a value."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lent = [p for p in self.params if p.param_type_name == "option" and not p.is_eager]
        for param in lent:
            if not hasattr(STATE, param.name):
                raise TypeError(f"global option {param.name!r} has no CliState field")
        for command in _descendants(self):
            taken = {opt for p in command.params for opt in p.opts}
            for param in lent:
                if taken.isdisjoint(param.opts):
                    command.params.append(_hidden_copy(param))


def _descendants(group: TyperGroup) -> Iterator[Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, TyperGroup):
            yield from _descendants(command)


def _hidden_copy(param: Parameter) -> Parameter:
    late = copy.copy(param)
    late.hidden = True  # type: ignore[attr-defined]
    late.expose_value = False
    late.envvar = None  # the environment is read once, by the root's own option
    late.callback = _given_after_command
    return late


def _given_after_command(ctx: Context, param: Parameter, value: Any) -> Any:
    """A global option given after a command: it takes effect as if given before it,
    unless it was given there too with another value."""
    if value is None:
        return value
    root = ctx.find_root()
    given: dict[str, Any] = root.meta.setdefault(_GIVEN, {})
    if param.name not in given and (
        root.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ):
        given[param.name] = root.params[param.name]
    before = given.get(param.name)
    if before is not None and before != value:
        raise _click_exceptions.UsageError(
            f"{param.opts[0]} given twice, as {before!r} and as {value!r}", ctx=ctx
        )
    given[param.name] = value
    setattr(STATE, param.name, value)
    return value


def db_url() -> str | None:
    """The --db / TAKEDOWN_DB value as given (None means the default file)."""
    return STATE.db


def print_json(data: Any) -> None:
    """Machine output: compact, sorted keys, one document on stdout."""
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False, sort_keys=True) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr and return an Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run(app: typer.Typer) -> int:
    """Run the app; map errors to one stderr line and the documented exit codes."""
    try:
        rv = app(standalone_mode=False)
    except TakedownError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except _click_exceptions.ClickException as exc:  # usage errors: exit code 2
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("TAKEDOWN_DEBUG"):
            raise
        from sqlalchemy.exc import SQLAlchemyError

        kind = "database error" if isinstance(exc, SQLAlchemyError) else "internal error"
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        hint = "; is the schema current? run `takedown init`" if kind == "database error" else ""
        err_console.print(
            f"[red]error:[/red] {kind}: {detail}{hint} (TAKEDOWN_DEBUG=1 shows the trace)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return rv if isinstance(rv, int) else 0


def principal():  # type: ignore[no-untyped-def]
    """Who is acting: the account of --token / TAKEDOWN_TOKEN, else the local bootstrap."""
    from takedown import accounts

    if not STATE.token:
        return accounts.bootstrap()
    return accounts.staff_for(database(), STATE.token)


def actor() -> str:
    """What the audit log records as the one acting (see ``principal``)."""
    return principal().label


def acting(permission: str):  # type: ignore[no-untyped-def]
    """The acting principal, refused (exit 1, one line) unless it may do ``permission``."""
    from takedown import accounts

    who = principal()
    accounts.authorise(who, permission)
    return who


def now():  # type: ignore[no-untyped-def]
    """The current time from the process clock (TAKEDOWN_CLOCK=file:PATH for scenarios)."""
    from takedown.clock import clock_from_env

    return clock_from_env().now()


def database(*, require_schema: bool = True):  # type: ignore[no-untyped-def]
    """Open the database named by --db / TAKEDOWN_DB."""
    from takedown.store.db import Database

    db = Database(db_url())
    if require_schema:
        db.require_schema()
    return db


def at_time(value: str | None, where: str) -> datetime:
    """The ISO 8601 time of option ``where`` (None: now)."""
    from takedown.clock import parse_time
    from takedown.errors import InputError

    if value is None:
        return now()
    try:
        return parse_time(value)
    except ValueError:
        raise InputError(f"not an ISO 8601 time: {value!r}", where=where) from None
