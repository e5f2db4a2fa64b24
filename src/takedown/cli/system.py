"""`takedown` commands: init, audit, bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from takedown.cli import common

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


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


@audit_app.command("verify")
def audit_verify(
    against: list[str] = typer.Option(
        None,
        "--against",
        help="A feed directory or URL: the chain must still hold every head it published.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Walk the event chain and report the first broken link; with --against, also check
    that the chain still contains every audit head that feed has published (so a cut or a
    rewrite after a publication shows). Events after the last publication are anchored by
    nothing yet.

    Example: takedown audit verify --against http://127.0.0.1:8470/feed/ --against old-copy/
    """
    from takedown.feed.anchors import published_heads
    from takedown.store.audit import verify_anchors, verify_chain

    heads, notes = [], []
    for source in against or ():
        found, skipped = published_heads(source)
        heads.extend(found)
        notes.extend(skipped)
    db = common.database()
    with db.reading() as session:
        report = verify_chain(session)
        anchors = verify_anchors(session, heads) if against else None
    if json_out:
        doc: dict[str, object] = {
            "ok": report.ok and (anchors is None or anchors.ok),
            "events": report.events,
            "first_broken": report.first_broken,
            "problem": report.problem,
        }
        if anchors is not None:
            doc["anchors"] = {
                "checked": anchors.checked,
                "newest": anchors.newest.to_json() if anchors.newest else None,
                "problems": list(anchors.problems),
                "notes": notes,
            }
        common.print_json(doc)
    else:
        for line in notes:
            common.err_console.print(line, highlight=False)
        if report.ok:
            common.console.print(f"audit chain intact: {report.events} events")
        if anchors is not None and anchors.ok:
            newest = f"newest event {anchors.newest.seq}" if anchors.newest else "none found"
            common.console.print(
                f"holds all {anchors.checked} published heads ({newest}); later events are "
                "not anchored yet"
            )
    if not report.ok:
        raise common.fail(f"audit chain broken at event {report.first_broken}: {report.problem}")
    if anchors is not None and not anchors.ok:
        raise common.fail(f"audit chain does not hold a published head: {anchors.problems[0]}")


@audit_app.command("list")
def audit_list(
    limit: int = typer.Option(50, help="Show the last N events."),
    type_: str = typer.Option(None, "--type", help="Only events of this type."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show recent events."""
    from rich.table import Table
    from sqlalchemy import select

    from takedown.store.schema import Event

    db = common.database()
    with db.reading() as session:
        query = select(Event).order_by(Event.seq.desc()).limit(limit)
        if type_:
            query = query.where(Event.type == type_)
        events = list(reversed(session.scalars(query).all()))
    rows = [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "type": e.type,
            "payload": e.payload,
            "hash": e.hash,
        }
        for e in events
    ]
    if json_out:
        common.print_json(rows)
        return
    table = Table("seq", "at", "actor", "type", "payload")
    for r in rows:
        table.add_row(str(r["seq"]), r["at"], r["actor"], r["type"], str(r["payload"])[:80])
    common.console.print(table)


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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("init")(init)
    app.add_typer(audit_app, name="audit")
    app.command("bench", context_settings={"allow_extra_args": True})(bench)
