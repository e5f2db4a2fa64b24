"""`takedown notices`: send, list, show."""

from __future__ import annotations

import typer
from rich.table import Table

from takedown.cli import common

app = typer.Typer(help="Notices to platforms: outbox, delivery, deadlines.")


@app.command("send")
def send(
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    max_items: int = typer.Option(1000, "--max-items", min=1, help="Items per notice."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Put due notices (initial and repeat) into the outbox; the worker delivers them."""
    from takedown.notices import outbox

    results = outbox.send(
        common.database(),
        now=common.now(),
        actor=common.actor(),
        platform=platform,
        max_items=max_items,
    )
    if as_json:
        common.print_json([r.as_json() for r in results])
        return
    for r in results:
        common.console.print(
            f"{r.platform}: {len(r.notices)} notice(s); "
            f"{r.initial_items} item(s) initial, {r.repeat_items} repeat"
        )


@app.command("list")
def list_(
    platform: str = typer.Option(None, "--platform"),
    overdue: bool = typer.Option(False, "--overdue", help="Past deadline, items still open."),
    limit: int = typer.Option(None, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """List notices with delivery state and open items."""
    from takedown.notices import outbox

    now = common.now()
    rows = outbox.list_notices(
        common.database(), now=now, platform=platform, overdue=overdue, limit=limit
    )
    if as_json:
        common.print_json([r.as_json(now) for r in rows])
        return
    table = Table("id", "platform", "kind", "issued", "deadline", "delivery", "ack", "open/items")
    for r in rows:
        deadline = f"{r.deadline_at:%Y-%m-%d %H:%M}" + (" OVERDUE" if r.overdue(now) else "")
        table.add_row(
            str(r.id),
            r.platform,
            r.kind,
            f"{r.issued_at:%Y-%m-%d %H:%M}",
            deadline,
            f"{r.delivery_state} ({r.attempts})",
            "yes" if r.acknowledged_at else "-",
            f"{r.open_items}/{r.items}",
        )
    common.console.print(table)


@app.command("show")
def show(
    notice_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show a notice, its items and its delivery log."""
    from takedown.notices import outbox

    doc = outbox.show_notice(common.database(), notice_id)
    if as_json:
        common.print_json(doc)
        return
    c = common.console
    c.print(
        f"notice {doc['id'] if 'id' in doc else doc['notice_id']} to {doc['platform']} "
        f"({doc['kind']}), issued {doc['issued_at']}, deadline {doc['deadline_at']}"
    )
    c.print(
        f"delivery: {doc['delivery_state']} after {doc['attempts']} attempt(s); "
        f"acknowledged: {doc['acknowledged_at'] or '-'}"
    )
    for a in doc["delivery_log"]:  # type: ignore[union-attr]
        c.print(f"  {a['at']}  status={a['status']}  {a['error'] or ''}", highlight=False)
    table = Table("item", "category", "state", "target")
    for i in doc["items"]:  # type: ignore[union-attr]
        table.add_row(str(i["id"]), i["category"], str(i["state"]), i["target"])
    c.print(table)
