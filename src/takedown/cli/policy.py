"""`takedown policy ...` (ladder check, eval, simulate) and `takedown measures ...`."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from takedown.cli import common

policy_app = typer.Typer(
    help="The enforcement ladder: check, evaluate, simulate.", no_args_is_help=True
)
measures_app = typer.Typer(
    help="Measures: list, explain, approve, impose and lift by decision.", no_args_is_help=True
)


def _time(value: str | None, where: str) -> datetime:
    from takedown.clock import parse_time
    from takedown.errors import InputError

    if value is None:
        return common.now()
    try:
        return parse_time(value)
    except ValueError:
        raise InputError(f"not an ISO 8601 time: {value!r}", where=where) from None


def _ladder(path: str | None):  # type: ignore[no-untyped-def]
    from takedown.errors import UsageError
    from takedown.policy import spec

    path = path or os.environ.get("TAKEDOWN_LADDER")
    if not path:
        raise UsageError("no ladder: pass --ladder FILE or set TAKEDOWN_LADDER", where="--ladder")
    return spec.load(path)


def _fmt(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {_fmt(v)}%" if k in ("mobile", "fixed") else f"{k}={_fmt(v)}"
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "*"
    return "" if value is None else str(value)


def _proposals_table(proposals: list[Any], title: str) -> Table:
    table = Table(title=title)
    for col in (
        "at",
        "platform",
        "kind",
        "rule",
        "action",
        "classes",
        "scope",
        "review",
        "approval",
        "figures",
    ):
        table.add_column(col)
    for p in proposals:
        what = p.action.value + (f" {p.rate_kbps} kbit/s" if p.rate_kbps else "")
        table.add_row(
            _fmt(p.at),
            p.platform,
            p.kind.value,
            p.rule,
            what,
            _fmt(p.classes),
            _fmt(p.scope),
            _fmt(p.review_at),
            "needed" if p.needs_approval else "",
            "; ".join(f"{k}={_fmt(v)}" for k, v in p.figures.items()),
        )
    return table


@policy_app.command("check")
def policy_check(
    file: str = typer.Argument(..., help="Ladder TOML file."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Validate a ladder file; errors name the file, rule and field."""
    from takedown.policy import spec

    ladder = spec.load(file)
    info = {
        "ok": True,
        "ladder": ladder.label,
        "rules": [r.name for r in ladder.rules],
        "platforms": {k: [r.name for r in v] for k, v in ladder.platform_rules.items()},
    }
    if json_out:
        common.print_json(info)
        return
    common.console.print(
        f"ok: ladder {ladder.label}: {len(ladder.rules)} default rule(s) "
        f"({', '.join(info['rules'])})"
        + (
            f"; platform lists: {', '.join(ladder.platform_rules)}" if ladder.platform_rules else ""
        ),
        highlight=False,
    )


@policy_app.command("eval")
def policy_eval(
    at: str = typer.Option(None, "--at", help="Evaluate as of this ISO 8601 time (default: now)."),
    apply: bool = typer.Option(False, "--apply", help="Write the proposals as measures."),
    ladder_file: str = typer.Option(None, "--ladder", help="Ladder file (or TAKEDOWN_LADDER)."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Evaluate the ladder over the ledger; without --apply it only proposes."""
    from takedown.policy import measures

    ladder = _ladder(ladder_file)
    now = _time(at, "--at")
    db = common.database()
    proposals, ids = measures.run(db, ladder, now, common.actor(), apply=apply, platform=platform)
    if json_out:
        common.print_json(
            {
                "at": now,
                "ladder": ladder.label,
                "applied": apply,
                "measure_ids": ids,
                "proposals": [p.to_dict() for p in proposals],
            }
        )
        return
    if not proposals:
        common.console.print(f"{ladder.label}: nothing to propose at {_fmt(now)}", highlight=False)
        return
    common.console.print(_proposals_table(proposals, f"{ladder.label} at {_fmt(now)}"))
    if apply:
        common.console.print(f"applied: measures {', '.join(map(str, ids))}", highlight=False)
    else:
        common.console.print("proposals only; --apply writes them", highlight=False)


@policy_app.command("simulate")
def policy_simulate(
    file: str = typer.Argument(..., help="Ladder TOML file."),
    start: str = typer.Option(..., "--from", help="First moment (ISO 8601)."),
    end: str = typer.Option(..., "--to", help="Last moment (ISO 8601)."),
    step: str = typer.Option("1d", "--step", help="Step: e.g. 1d, 6h."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    approve: bool = typer.Option(False, "--approve", help="Take approvals as given at once."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Replay a ladder over the recorded history without writing anything."""
    from takedown.policy import measures, spec

    ladder = spec.load(file)
    results = measures.simulate(
        common.database(),
        ladder,
        _time(start, "--from"),
        _time(end, "--to"),
        step=spec.parse_duration(step, "--step"),
        platform=platform,
        approve=approve,
    )
    if json_out:
        common.print_json(
            {
                "ladder": ladder.label,
                "platforms": {
                    slug: [
                        {
                            "at": r.now,
                            "proposals": [p.to_dict() for p in r.proposals],
                            "in_force": [
                                {
                                    "rule": m.rule,
                                    "action": m.action.value,
                                    "state": m.state.value,
                                    "scope": dict(m.scope),
                                    "rate_kbps": m.rate_kbps,
                                    "classes": list(m.classes),
                                    "review_at": m.review_at,
                                }
                                for m in r.measures
                            ],
                        }
                        for r in steps
                    ]
                    for slug, steps in results.items()
                },
            }
        )
        return
    props = [p for steps in results.values() for r in steps for p in r.proposals]
    common.console.print(_proposals_table(props, f"what-if: {ladder.label}"))


@measures_app.command("list")
def measures_list(
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
    at: str = typer.Option(None, "--at", help="As of this ISO 8601 time."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
) -> None:
    """List measures with their state (as of --at if given)."""
    from takedown.policy import measures

    rows = measures.list_measures(
        common.database(), at=_time(at, "--at") if at else common.now(), platform=platform
    )
    if json_out:
        common.print_json(rows)
        return
    table = Table(title="measures")
    for col in (
        "id",
        "platform",
        "state",
        "action",
        "classes",
        "scope",
        "since",
        "review",
        "rule / decision",
    ):
        table.add_column(col)
    for m in rows:
        what = m["action"] + (f" {m['rate_kbps']} kbit/s" if m["rate_kbps"] else "")
        table.add_row(
            str(m["id"]),
            m["platform"],
            m["state"],
            what,
            _fmt(m["classes"]),
            _fmt(m["scope"]),
            _fmt(m["starts_at"] or m["proposed_at"]),
            _fmt(m["review_at"]),
            m["rule"] or m["decision_ref"] or "",
        )
    common.console.print(table)


@measures_app.command("explain")
def measures_explain(
    measure_id: int = typer.Argument(..., metavar="ID"),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """The rule, the figures, the legal decisions behind the items, the approvals."""
    from takedown.policy import measures

    info = measures.explain(common.database(), measure_id)
    if json_out:
        common.print_json(info)
        return
    out = common.console
    what = info["action"] + (f" {info['rate_kbps']} kbit/s" if info["rate_kbps"] else "")
    out.print(
        f"measure {info['id']}: {what} on {info['platform']} "
        f"[{_fmt(info['classes'])}] {_fmt(info['scope'])} — {info['state']}",
        highlight=False,
    )
    out.print(
        f"  proposed {_fmt(info['proposed_at'])}, active {_fmt(info['starts_at'])}, "
        f"review {_fmt(info['review_at'])}, lifted {_fmt(info['lifted_at'])}",
        highlight=False,
    )
    if info["rule"]:
        out.print(
            f"  ladder {info['ladder']}, rule {info['rule']} "
            f"(fired: {info['figures'].get('fired')})",
            highlight=False,
        )
    if info["decision_ref"]:
        out.print(f"  decision {info['decision_ref']}", highlight=False)
    out.print(f"  reason: {info['reason']}", highlight=False)
    read = info["figures"].get("read", {})
    if read:
        out.print(
            "  figures read: " + "; ".join(f"{k}={_fmt(v)}" for k, v in read.items()),
            highlight=False,
        )
    basis = info["legal_basis"]
    out.print(
        f"  legal basis: {basis['items']} items under {basis['decisions_total']} "
        f"decision(s): " + ", ".join(f"{k} {v}" for k, v in basis["by_category"].items()),
        highlight=False,
    )
    for d in basis["decisions"][:20]:
        cats = ", ".join(f"{k} {v}" for k, v in d["by_category"].items())
        out.print(
            f"    {d['decision']} ({d['authority'] or '?'}, {d['date'] or '?'}): "
            f"{d['items']} items: {cats}",
            highlight=False,
        )
    for o in info["obligations"]:
        out.print(
            f"  obligation {o['kind']}: {o['state']} (decision {o['decision']}, {_fmt(o['at'])})",
            highlight=False,
        )
    for a in info["approvals"]:
        out.print(f"  approved by {a['by']} at {_fmt(a['at'])}", highlight=False)
    for e in info["events"]:
        out.print(
            f"  event {e['seq']} {_fmt(e['at'])} {e['type']} by {e['actor']}", highlight=False
        )


@measures_app.command("approve")
def measures_approve(
    measure_id: int = typer.Argument(..., metavar="ID"),
    by: str = typer.Option(..., "--by", help="The approver (not the one who applied it)."),
) -> None:
    """Approve a proposed measure; it becomes active now."""
    from takedown.policy import measures

    m = measures.approve(common.database(), measure_id, by, common.now())
    common.console.print(f"measure {m['id']} approved by {by}: {m['state']}", highlight=False)


@measures_app.command("add")
def measures_add(
    slug: str = typer.Argument(..., metavar="SLUG"),
    action: str = typer.Option(..., "--action", help="throttle or block."),
    rate_kbps: int = typer.Option(None, "--rate-kbps", help="Throttle rate, kbit/s."),
    classes: str = typer.Option("*", "--classes", help="Content classes, e.g. media,links."),
    mobile: float = typer.Option(100.0, "--mobile", help="Percent of mobile subscribers."),
    fixed: float = typer.Option(100.0, "--fixed", help="Percent of fixed subscribers."),
    expires: str = typer.Option(None, "--expires", help="Expiry (ISO 8601)."),
    decision: str = typer.Option(..., "--decision", help="The decision imposing it."),
    reason: str = typer.Option(..., "--reason", help="Why."),
) -> None:
    """Impose a measure by decision, outside any ladder (a block awaits approval)."""
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
        expires=_time(expires, "--expires") if expires else None,
    )
    common.console.print(f"measure {mid} recorded", highlight=False)


@measures_app.command("lift")
def measures_lift(
    measure_id: int = typer.Argument(..., metavar="ID"),
    decision: str = typer.Option(..., "--decision", help="The decision lifting it."),
) -> None:
    """Lift a measure by decision."""
    from takedown.policy import measures

    measures.lift(common.database(), measure_id, decision, common.now(), common.actor())
    common.console.print(f"measure {measure_id} lifted", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `policy` and `measures` groups to the main app."""
    app.add_typer(policy_app, name="policy")
    app.add_typer(measures_app, name="measures")
