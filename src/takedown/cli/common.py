"""What every command group shares: the database option, output helpers, error handling."""

from __future__ import annotations

import copy
import enum
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click import exceptions as _click_exceptions  # Typer vendors Click
from typer._click.core import Command, Context, Parameter, ParameterSource
from typer.core import TyperGroup

from takedown.errors import TakedownError

# Messages are never wrapped by Rich: a terminal wraps them itself, and a pipe gets each
# message on one line (a value cut at 80 columns is lost to grep).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


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


# --- output: one time format, one JSON shape, tables that survive a pipe ----------------

# a date-time as the library's own ``isoformat()`` or ``str()`` writes it (offset required)
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)\Z")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # the one output format


def timestamp(when: datetime) -> str:
    """The one time format of every output: RFC 3339, UTC, whole seconds
    (``2021-03-10T00:00:00Z``). A naive time is taken as UTC."""
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_text(text: str) -> str:
    """``text`` in the one time format if it is a date-time with an offset, else as is."""
    if len(text) > 40 or not _ISO_TIME.match(text):
        return text
    try:
        return timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data, every time in the one format (including times the
    library already wrote as text), enums as their values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return _time_text(value)
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout (compact, sorted keys). A listing is an
    array, one object per row; a command that creates or changes something prints it."""
    sys.stdout.write(json.dumps(plain(data), ensure_ascii=False, sort_keys=True) + "\n")


def print_jsonl(rows: Iterable[Any]) -> None:
    """Machine output as a stream (``--jsonl``): one compact JSON object per line."""
    for row in rows:
        sys.stdout.write(json.dumps(plain(row), ensure_ascii=False, sort_keys=True) + "\n")


def cell(value: Any) -> str:
    """A value as a table cell (times in the one format; None empty)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, enum.Enum):
        return cell(value.value)
    return _time_text(value) if isinstance(value, str) else str(value)


def _tsv(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table for people on a terminal; on a pipe or a file, tab-separated values with a
    header row and every value whole (tab, newline and backslash escaped as ``\\t``,
    ``\\n``, ``\\\\``; no title, no box, nothing cut)."""
    if not console.is_terminal:
        out = sys.stdout
        out.write("\t".join(_tsv(c) for c in columns) + "\n")
        for row in rows:
            out.write("\t".join(_tsv(cell(v)) for v in row) + "\n")
        out.flush()
        return
    cells = [[cell(v) for v in row] for row in rows]
    table = Table(title=title)
    for i, name in enumerate(columns):
        # a value too wide is folded onto more lines, never cut; a time is never split
        timed = any(_RFC3339.match(row[i]) for row in cells if i < len(row))
        table.add_column(name, overflow="fold", min_width=20 if timed else None)
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    console.print(table)


def error_line(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one line (the message is text, never markup)."""
    line = Text("error:", style="red").append(" " + " ".join(message.splitlines()), style="")
    err_console.print(line, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr and return an Exit to raise."""
    error_line(message)
    return typer.Exit(code)


def run(app: typer.Typer) -> int:
    """Run the app; map errors to one stderr line and the documented exit codes."""
    try:
        rv = app(standalone_mode=False)
    except TakedownError as exc:
        error_line(str(exc))
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
        error_line(f"{_unexpected(exc)} (TAKEDOWN_DEBUG=1 shows the trace)")
        return 1
    return rv if isinstance(rv, int) else 0


def _unexpected(exc: Exception) -> str:
    """One line for an error no command caught: a database that cannot be reached, a
    schema that is missing or old (then ``takedown init`` helps), another database error,
    an internal error."""
    from sqlalchemy.exc import SQLAlchemyError

    from takedown.store.db import is_connection_error, is_schema_error, resolve_url, unavailable

    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = (detail[0] if detail else exc.__class__.__name__)[:300]
    if not isinstance(exc, SQLAlchemyError):
        return f"internal error: {first}"
    if is_connection_error(exc):
        from sqlalchemy.engine import make_url

        try:
            url = make_url(resolve_url(db_url())).render_as_string(hide_password=True)
        except Exception:  # the URL was refused earlier, or is not one
            url = "(--db)"
        return str(unavailable(url, exc))
    if is_schema_error(exc):
        return f"database error: {first}; the schema is missing or old: run `takedown init`"
    return f"database error: {first}"


def principal():  # type: ignore[no-untyped-def]
    """Who is acting: the account of --token / TAKEDOWN_TOKEN, else the local bootstrap."""
    from takedown import accounts

    if not STATE.token:
        return accounts.bootstrap()
    return accounts.staff_for(database(), STATE.token)


def actor() -> str:
    """What the audit log records as the one acting (see ``principal``)."""
    return principal().label


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
    else:
        db.ping()
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


def listen_socket(host: str, port: int):  # type: ignore[no-untyped-def]
    """A TCP socket bound to HOST:PORT for a server to accept on; one line and exit 1 if
    the port is taken or the address cannot be used (bound here, before anything starts,
    so the server never half-starts)."""
    import errno
    import socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {where}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise fail(f"{where} is in use") from None
        raise fail(f"cannot listen on {where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


PORT_RANGE = {"min": 1, "max": 65535}  # typer.Option(..., **PORT_RANGE): else exit 2
