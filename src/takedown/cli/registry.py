"""`takedown registry …`: the register of restricted items."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from takedown.cli import common

app = typer.Typer(help="The register of restricted items.", no_args_is_help=True)

IMPORT_FORMATS = "rkn-csv|citizenlab|jsonl|csv"
EXPORT_FORMATS = "jsonl|csv|rkn-csv|rpz|nft|hosts"


def _decision_date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise common.fail(f"--decision-date: not a date (YYYY-MM-DD): {value!r}", 2) from None


@app.command("add")
def add(
    target: str = typer.Argument(..., help="URL, domain, *.domain, IP address or CIDR."),
    category: str = typer.Option(..., "--category", "-c", help="Category code."),
    basis: str = typer.Option(..., "--basis", help="Legal basis (law and article)."),
    decision: str = typer.Option(..., "--decision", help="Decision reference."),
    authority: str = typer.Option(None, "--authority", help="Authority that decided."),
    decision_date: str = typer.Option(None, "--decision-date", help="YYYY-MM-DD."),
    platform: str = typer.Option(None, "--platform", help="Platform slug."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Add one item to the register."""
    from takedown.model import Decision, ItemRecord
    from takedown.registry.service import add_item
    from takedown.registry.targets import parse_target_flags

    parsed, flags = parse_target_flags(target, where="TARGET")
    record = ItemRecord(
        target=parsed,
        flags=flags,
        category=category,
        basis=basis,
        decision=Decision(decision, authority, _decision_date(decision_date)),
        platform=platform,
        source="cli",
    )
    db = common.database()
    item_id, created = add_item(db, record, now=common.now(), actor=common.actor())
    if json_out:
        common.print_json({"id": item_id, "created": created, "target": record.target.value})
    elif created:
        common.console.print(f"item {item_id}: {record.target.value}")
    else:
        common.console.print(f"item {item_id} already lists {record.target.value} under {decision}")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="Register file."),
    fmt: str = typer.Option(..., "--format", "-f", help=IMPORT_FORMATS),
    platform: str = typer.Option(None, "--platform", help="Platform slug for every item."),
    category: str = typer.Option(None, "--category", help="Category where the file has none."),
    basis: str = typer.Option(None, "--basis", help="Legal basis where the file has none."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Import valid rows; write rejected ones to a report file."
    ),
    report: Path = typer.Option(None, "--report", help="Where to write rejected rows."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Import a register file in one transaction (nothing changes if a row is bad)."""
    from takedown.registry.formats import ReadDefaults
    from takedown.registry.service import import_file

    db = common.database()
    defaults = ReadDefaults(category=category or "other", basis=basis or "", platform=platform)
    size = file.stat().st_size if file.exists() else 0
    show = not json_out and sys.stderr.isatty()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=common.err_console,
        disable=not show,
    ) as progress:
        task = progress.add_task(f"importing {file.name}", total=size)
        result = import_file(
            db,
            file,
            fmt,
            now=common.now(),
            actor=common.actor(),
            platform=platform,
            skip_invalid=skip_invalid,
            defaults=defaults,
            report_path=report,
            on_read=lambda n: progress.advance(task, n),
        )
    summary = {
        "file": result.path,
        "format": result.format,
        "rows": result.rows,
        "inserted": result.inserted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "report": result.report,
        "committed": result.committed,
        "errors": result.errors,
    }
    if json_out:
        common.print_json(summary)
    if not result.committed:
        if not json_out:
            for line in result.errors:
                common.err_console.print(line, highlight=False, soft_wrap=True)
        more = result.rejected - len(result.errors)
        extra = f" (and {more} more)" if more > 0 else ""
        raise common.fail(
            f"{result.rejected} invalid row(s){extra}; nothing imported "
            "(fix them, or use --skip-invalid)"
        )
    if not json_out:
        common.console.print(
            f"imported {result.inserted} item(s) from {result.path}: {result.rows} read, "
            f"{result.duplicates} duplicate(s) merged, {result.rejected} rejected"
            + (f" (see {result.report})" if result.report else "")
        )


@app.command("export")
def export(
    fmt: str = typer.Option(..., "--format", "-f", help=EXPORT_FORMATS),
    output: Path = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    category: str = typer.Option(None, "--category"),
    platform: str = typer.Option(None, "--platform"),
) -> None:
    """Export the register for resolvers, firewalls and other registers."""
    from takedown.registry.service import export as do_export

    db = common.database()
    if output is None:
        count = do_export(
            db, fmt, sys.stdout.buffer, now=common.now(), category=category, platform=platform
        )
        sys.stdout.buffer.flush()
    else:
        tmp = output.with_name(output.name + ".part")
        try:
            with tmp.open("wb") as out:
                count = do_export(
                    db, fmt, out, now=common.now(), category=category, platform=platform
                )
            tmp.replace(output)
        except OSError as exc:
            raise common.fail(f"{output}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
        common.err_console.print(f"wrote {count} item(s) to {output}")


@app.command("list")
def list_(
    category: str = typer.Option(None, "--category"),
    platform: str = typer.Option(None, "--platform"),
    limit: int = typer.Option(100, "--limit", help="At most N rows (0: all)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output (JSON Lines)."),
) -> None:
    """List register items."""
    from takedown.registry.formats._base import entry_fields as entry_to_dict
    from takedown.registry.service import read_entries

    entries = read_entries(
        common.database(), category=category, platform=platform, limit=limit or None
    )
    if json_out:
        for entry in entries:
            common.print_json(entry_to_dict(entry))
        return
    table = Table("id", "target", "category", "platform", "decision", "state")
    for e in entries:
        r = e.record
        table.add_row(
            str(e.id),
            r.target.value,
            r.category,
            r.platform or "",
            r.decision.reference,
            e.state.value,
        )
    common.console.print(table)


@app.command("show")
def show(
    item_id: int = typer.Argument(...),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show one item with its legal basis and provenance."""
    from takedown.registry.formats._base import entry_fields as entry_to_dict
    from takedown.registry.service import get_item

    db = common.database()
    entry, item = get_item(db, item_id)
    data = entry_to_dict(entry)
    data.update(deadline_at=item.deadline_at, delist_decision=item.delist_decision)
    if json_out:
        common.print_json(data)
        return
    table = Table(show_header=False)
    for key, value in data.items():
        table.add_row(key, "" if value is None else str(value))
    common.console.print(table)


@app.command("delist")
def delist(
    item_id: int = typer.Argument(...),
    decision: str = typer.Option(..., "--decision", help="The decision that delists it."),
) -> None:
    """Delist an item by a new decision."""
    from takedown.registry.service import delist as do_delist

    db = common.database()
    do_delist(db, item_id, decision, now=common.now(), actor=common.actor())
    common.console.print(f"item {item_id} delisted under {decision}")
