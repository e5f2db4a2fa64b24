"""`takedown audit`: verify and list the hash-chained audit log."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(json_out: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """Walk the event chain and report the first broken link."""
    from takedown.store.audit import verify_db

    report = verify_db(common.database())
    if json_out:
        common.print_json(
            {
                "ok": report.ok,
                "events": report.events,
                "first_broken": report.first_broken,
                "problem": report.problem,
            }
        )
    elif report.ok:
        common.console.print(f"audit chain intact: {report.events} events")
    if not report.ok:
        raise common.fail(f"audit chain broken at event {report.first_broken}: {report.problem}")


@app.command("list")
def list_(
    limit: int = typer.Option(50, help="Show the last N events."),
    type_: str = typer.Option(None, "--type", help="Only events of this type."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show recent events."""
    from rich.table import Table

    from takedown.store.audit import recent_events

    rows = recent_events(common.database(), limit=limit, type_=type_)
    if json_out:
        common.print_json(rows)
        return
    table = Table("seq", "at", "actor", "type", "payload")
    for r in rows:
        table.add_row(str(r["seq"]), r["at"], r["actor"], r["type"], str(r["payload"])[:80])
    common.console.print(table)
