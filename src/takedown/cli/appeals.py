"""`takedown appeals`: list, show and decide appeals against measures and items."""

from __future__ import annotations

from typing import Literal

import typer

from takedown.cli import common
from takedown.cli.policy import fmt

app = typer.Typer(
    help="Appeals against measures and items: list, show, decide.", no_args_is_help=True
)

JSON = typer.Option(False, "--json", help="Machine output (includes the contact: staff only).")


@app.command("list")
def appeals_list(
    state: Literal["open", "upheld", "reversed"] = typer.Option(
        None, "--state", help="Only appeals in this state."
    ),
    overdue: bool = typer.Option(False, "--overdue", help="Only open appeals past their deadline."),
    after: int = typer.Option(0, "--after", help="Page on: the last id of the previous page."),
    limit: int = typer.Option(100, "--limit", help="At most this many (1..500)."),
    json_out: bool = JSON,
) -> None:
    """List appeals, oldest first.

    Example: takedown appeals list --overdue --json
    """
    from takedown import appeals

    now = common.now()
    records = appeals.list_appeals(
        common.database(),
        state=state,
        overdue_at=now if overdue else None,
        after=after,
        limit=limit,
    )
    if json_out:
        common.print_json([{**a.as_json(), "overdue": a.overdue(now)} for a in records])
        return
    common.print_table(
        ("id", "against", "platform", "appellant", "filed", "due", "state", "decided by"),
        (
            (
                a.id,
                a.subject,
                a.platform or "-",
                a.appellant + (f" ({a.filed_by})" if a.filed_by else ""),
                fmt(a.filed_at),
                fmt(a.due_at) + (" (overdue)" if a.overdue(now) else ""),
                a.state.value,
                a.decided_by or "",
            )
            for a in records
        ),
        title="appeals",
    )


@app.command("show")
def appeals_show(
    appeal_id: int = typer.Argument(..., metavar="ID"),
    json_out: bool = JSON,
) -> None:
    """One appeal with its grounds, contact and decision.

    Example: takedown appeals show 4
    """
    from takedown import appeals

    a = appeals.get_appeal(common.database(), appeal_id)
    now = common.now()
    if json_out:
        common.print_json({**a.as_json(), "overdue": a.overdue(now)})
        return
    lines = [
        f"appeal {a.id} against {a.subject} ({a.platform or 'no platform'}): {a.state.value}",
        f"  filed {fmt(a.filed_at)} by {a.appellant}"
        + (f" (platform {a.filed_by}, through its API)" if a.filed_by else ""),
        f"  due {fmt(a.due_at)}" + (" — overdue" if a.overdue(now) else ""),
        f"  contact: {a.contact or '-'}",
        "  grounds:",
        *(f"    {line}" for line in a.grounds.splitlines()),
    ]
    if a.decided_at is not None:
        lines.append(f"  decided {fmt(a.decided_at)} by {a.decided_by}: {a.state.value}")
        lines += [f"    {line}" for line in (a.reasons or "").splitlines()]
    for line in lines:
        common.console.print(line, highlight=False, markup=False)


@app.command("decide")
def appeals_decide(
    appeal_id: int = typer.Argument(..., metavar="ID"),
    outcome: Literal["upheld", "reversed"] = typer.Option(..., "--outcome", help="The decision."),
    reason: str = typer.Option(..., "--reason", help="The reasons (published with the outcome)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the appeal."),
) -> None:
    """Decide an appeal as the account of --token: upheld, or reversed.

    Reversed lifts the measure or delists the item. Not by the account that proposed the
    measure or listed the item, never by the local bootstrap.

    Example: TAKEDOWN_TOKEN=$IVANOVA takedown appeals decide 4 --outcome reversed
    --reason "the throttle hits an unrelated school site"
    """
    from takedown import appeals

    who = common.principal()
    a = appeals.decide(
        common.database(), appeal_id, outcome=outcome, reasons=reason, actor=who, now=common.now()
    )
    if json_out:
        common.print_json(a.as_json())
        return
    done = {"reversed": " (reversed: lifted or delisted)", "upheld": ""}[a.state.value]
    common.console.print(
        f"appeal {a.id} against {a.subject} {a.state.value} by {who.name}{done}", highlight=False
    )
