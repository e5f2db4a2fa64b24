"""`takedown measures ...`: list, explain, approve, impose and lift measures by decision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import typer

from takedown.cli import common
from takedown.cli.policy import fmt

if TYPE_CHECKING:
    from takedown.model import MeasureExplanation

app = typer.Typer(
    help="Measures: list, explain, approve, impose and lift by decision.", no_args_is_help=True
)


@app.command("list")
def measures_list(
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
    at: str = typer.Option(None, "--at", help="As of this ISO 8601 time."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
) -> None:
    """List measures with their state (as of --at if given).

    Example: takedown measures list --platform twitter --json
    """
    from takedown.policy import measures

    records = measures.list_measures(
        common.database(), at=common.at_time(at, "--at"), platform=platform
    )
    if json_out:
        common.print_json([m.as_json() for m in records])
        return
    columns = ("id", "platform", "state", "action", "classes", "scope", "since", "review",
               "rule / decision")  # fmt: skip
    rows = (
        (m.id, m.platform, m.state.value, m.describe(), fmt(m.classes), fmt(m.scope),
         fmt(m.starts_at or m.proposed_at), fmt(m.review_at), m.rule or m.decision_ref or "")
        for m in records
    )  # fmt: skip
    common.print_table(columns, rows, title="measures")


@app.command("explain")
def measures_explain(
    measure_id: int = typer.Argument(..., metavar="ID"),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """The rule, the figures, the legal decisions behind the items, the approvals.

    Example: takedown measures explain 3
    """
    from takedown.policy import measures

    info = measures.explain(common.database(), measure_id)
    if json_out:
        common.print_json(info.as_json())
        return
    for line in explanation_lines(info):
        common.console.print(line, highlight=False)


def explanation_lines(info: MeasureExplanation) -> list[str]:
    """``measures explain`` as lines of text."""
    m = info.measure
    lines = [
        f"measure {m.id}: {m.describe()} on {m.platform} "
        f"[{fmt(m.classes)}] {fmt(m.scope)} — {m.state.value}",
        f"  proposed {fmt(m.proposed_at)}, active {fmt(m.starts_at)}, "
        f"review {fmt(m.review_at)}, lifted {fmt(m.lifted_at)}",
    ]
    if m.rule:
        lines.append(f"  ladder {m.ladder}, rule {m.rule} (fired: {m.figures.get('fired')})")
    if m.decision_ref:
        lines.append(f"  decision {m.decision_ref}")
    lines.append(f"  reason: {m.reason}")
    read = m.figures.get("read", {})
    if read:
        lines.append("  figures read: " + "; ".join(f"{k}={fmt(v)}" for k, v in read.items()))
    basis = info.legal_basis
    lines.append(
        f"  legal basis: {basis.items} items under {basis.decisions_total} "
        f"decision(s): " + ", ".join(f"{k} {v}" for k, v in basis.by_category.items())
    )
    for d in basis.decisions[:20]:
        cats = ", ".join(f"{k} {v}" for k, v in d.by_category.items())
        lines.append(
            f"    {d.decision} ({d.authority or '?'}, {d.date or '?'}): {d.items} items: {cats}"
        )
    lines += [
        f"  obligation {o.kind}: {o.state} (decision {o.decision}, {fmt(o.at)})"
        for o in info.obligations
    ]
    lines += [f"  approved by {a.by} at {fmt(a.at)}" for a in info.approvals]
    lines += [f"  event {e.seq} {fmt(e.at)} {e.type} by {e.actor}" for e in info.events]
    return lines


@app.command("approve")
def measures_approve(
    measure_id: int = typer.Argument(..., metavar="ID"),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the measure."),
) -> None:
    """Approve a proposed measure as the account of --token; it becomes active now.

    Four eyes: an approver account that did not propose it. Example:
    TAKEDOWN_TOKEN=$PETROVA takedown measures approve 3
    """
    from takedown.policy import measures

    who = common.principal()
    m = measures.approve(common.database(), measure_id, who, common.now())
    if json_out:
        common.print_json(m.as_json())
        return
    common.console.print(f"measure {m.id} approved by {who.name}: {m.state.value}", highlight=False)


@app.command("reject")
def measures_reject(
    measure_id: int = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option(..., "--reason", help="Why it is rejected."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the measure."),
) -> None:
    """Reject a proposed measure as the account of --token (the same four eyes as approve).

    Example: TAKEDOWN_TOKEN=$PETROVA takedown measures reject 3 --reason "figures stale"
    """
    from takedown.policy import measures

    who = common.principal()
    m = measures.reject(common.database(), measure_id, who, reason, common.now())
    if json_out:
        common.print_json(m.as_json())
        return
    common.console.print(f"measure {m.id} rejected by {who.name}", highlight=False)


@app.command("add")
def measures_add(
    slug: str = typer.Argument(..., metavar="SLUG"),
    action: Literal["throttle", "block"] = typer.Option(..., "--action", help="What it does."),
    rate_kbps: int = typer.Option(None, "--rate-kbps", help="Throttle rate, kbit/s."),
    classes: str = typer.Option("*", "--classes", help="Content classes, e.g. media,links."),
    mobile: float = typer.Option(100.0, "--mobile", help="Percent of mobile subscribers."),
    fixed: float = typer.Option(100.0, "--fixed", help="Percent of fixed subscribers."),
    expires: str = typer.Option(None, "--expires", help="Expiry (ISO 8601)."),
    decision: str = typer.Option(..., "--decision", help="The decision imposing it."),
    reason: str = typer.Option(..., "--reason", help="Why."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the measure."),
) -> None:
    """Impose a measure by decision, outside any ladder (a block awaits approval).

    Example: takedown measures add twitter --action throttle --rate-kbps 128
    --classes media --decision 27-31-2021/Ид1 --reason "court order" --json
    """
    from takedown.policy import measures

    mid = measures.add(
        common.database(),
        slug,
        action=action,
        decision=decision,
        reason=reason,
        now=common.now(),
        actor=common.actor(),
        rate_kbps=rate_kbps,
        classes=[c.strip() for c in classes.split(",") if c.strip()],
        scope={"mobile": mobile, "fixed": fixed},
        expires=common.at_time(expires, "--expires") if expires else None,
    )
    if json_out:
        common.print_json(_measure(mid))
        return
    common.console.print(f"measure {mid} recorded", highlight=False)


@app.command("lift")
def measures_lift(
    measure_id: int = typer.Argument(..., metavar="ID"),
    decision: str = typer.Option(..., "--decision", help="The decision lifting it."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the measure."),
) -> None:
    """Lift a measure by decision.

    Example: takedown measures lift 3 --decision 27-31-2021/Ид9 --json
    """
    from takedown.policy import measures

    measures.lift(common.database(), measure_id, decision, common.now(), common.actor())
    if json_out:
        common.print_json(_measure(measure_id))
        return
    common.console.print(f"measure {measure_id} lifted", highlight=False)


def _measure(measure_id: int) -> dict[str, object]:
    """A measure as ``measures list --json`` shows it, as of now."""
    from takedown.policy import measures

    return measures.explain(common.database(), measure_id).measure.as_json()
