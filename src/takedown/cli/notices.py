"""`takedown notices`: send, list, show."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="Notices to platforms: outbox, delivery, deadlines.")


@app.command("send")
def send(
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    max_items: int = typer.Option(1000, "--max-items", min=1, help="Items per notice."),
    as_json: bool = typer.Option(
        False, "--json", help="Machine output: per platform, the notices queued (ids)."
    ),
) -> None:
    """Put due notices (initial and repeat) into the outbox; the worker delivers them.

    Example: takedown notices send --platform twitter --json
    """
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
    """List notices with delivery state and open items.

    Example: takedown notices list --overdue --json
    """
    from takedown.notices import outbox

    now = common.now()
    rows = outbox.list_notices(
        common.database(), now=now, platform=platform, overdue=overdue, limit=limit
    )
    if as_json:
        common.print_json([r.as_json(now) for r in rows])
        return
    common.print_table(
        ("id", "platform", "kind", "issued", "deadline", "delivery", "ack", "open/items"),
        (
            (
                r.id,
                r.platform,
                r.kind,
                r.issued_at,
                common.timestamp(r.deadline_at) + (" OVERDUE" if r.overdue(now) else ""),
                f"{r.delivery_state} ({r.attempts})",
                "yes" if r.acknowledged_at else "-",
                f"{r.open_items}/{r.items}",
            )
            for r in rows
        ),
    )


@app.command("show")
def show(
    notice_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show a notice, its items and its delivery log.

    Example: takedown notices show 1 --json
    """
    from takedown.notices import outbox

    doc = outbox.show_notice(common.database(), notice_id)
    if as_json:
        common.print_json(doc)
        return
    c, t = common.console, common.cell
    c.print(
        f"notice {doc['id'] if 'id' in doc else doc['notice_id']} to {doc['platform']} "
        f"({doc['kind']}), issued {t(doc['issued_at'])}, deadline {t(doc['deadline_at'])}",
        highlight=False,
        markup=False,
    )
    c.print(
        f"delivery: {doc['delivery_state']} after {doc['attempts']} attempt(s); "
        f"acknowledged: {t(doc['acknowledged_at']) or '-'}",
        highlight=False,
        markup=False,
    )
    for a in doc["delivery_log"]:  # type: ignore[union-attr]
        c.print(
            f"  {t(a['at'])}  status={a['status']}  {a['error'] or ''}",
            highlight=False,
            markup=False,
        )
    common.print_table(
        ("item", "category", "state", "target"),
        ((i["id"], i["category"], i["state"], i["target"]) for i in doc["items"]),  # type: ignore[union-attr]
    )
