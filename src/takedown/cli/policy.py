"""`takedown policy ...`: check a ladder, evaluate it over the ledger, simulate it."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import typer

from takedown.cli import common

app = typer.Typer(help="The enforcement ladder: check, evaluate, simulate.", no_args_is_help=True)


def _ladder(path: str | None):  # type: ignore[no-untyped-def]
    from takedown.errors import UsageError
    from takedown.policy import spec

    path = path or os.environ.get("TAKEDOWN_LADDER")
    if not path:
        raise UsageError("no ladder: pass --ladder FILE or set TAKEDOWN_LADDER", where="--ladder")
    return spec.load(path)


def fmt(value: Any) -> str:
    """A value as a table cell: times as RFC 3339 UTC, short floats, scopes as
    ``mobile 100%``."""
    if isinstance(value, datetime):
        return common.timestamp(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {fmt(v)}%" if k in ("mobile", "fixed") else f"{k}={fmt(v)}"
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "*"
    return "" if value is None else str(value)


def _print_proposals(proposals: list[Any], title: str) -> None:
    columns = ("at", "platform", "kind", "rule", "action", "classes", "scope", "review",
               "approval", "figures")  # fmt: skip
    common.print_table(columns, (_proposal_row(p) for p in proposals), title=title)


def _proposal_row(p: Any) -> tuple[str, ...]:
    from takedown.model import describe_action

    return (
        fmt(p.at),
        p.platform,
        p.kind.value,
        p.rule,
        describe_action(p.action, p.rate_kbps),
        fmt(p.classes),
        fmt(p.scope),
        fmt(p.review_at),
        "needed" if p.needs_approval else "",
        "; ".join(f"{k}={fmt(v)}" for k, v in p.figures.items()),
    )


@app.command("check")
def policy_check(
    file: str = typer.Argument(..., help="Ladder TOML file."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Validate a ladder file; errors name the file, rule and field.

    Example: takedown policy check examples/ladders/ru-2021.toml
    """
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


@app.command("eval")
def policy_eval(
    at: str = typer.Option(None, "--at", help="Evaluate as of this ISO 8601 time (default: now)."),
    apply: bool = typer.Option(False, "--apply", help="Write the proposals as measures."),
    ladder_file: str = typer.Option(None, "--ladder", help="Ladder file (or TAKEDOWN_LADDER)."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Evaluate the ladder over the ledger; without --apply it only proposes.

    With --apply and --json, the measures written are ``measure_ids``.
    Example: takedown policy eval --ladder examples/ladders/ru-2021.toml --apply --json
    """
    from takedown.policy import measures

    ladder = _ladder(ladder_file)
    now = common.at_time(at, "--at")
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
        common.console.print(f"{ladder.label}: nothing to propose at {fmt(now)}", highlight=False)
        return
    _print_proposals(proposals, f"{ladder.label} at {fmt(now)}")
    if apply:
        common.console.print(f"applied: measures {', '.join(map(str, ids))}", highlight=False)
    else:
        common.console.print("proposals only; --apply writes them", highlight=False)


@app.command("simulate")
def policy_simulate(
    file: str = typer.Argument(..., help="Ladder TOML file."),
    start: str = typer.Option(..., "--from", help="First moment (ISO 8601)."),
    end: str = typer.Option(..., "--to", help="Last moment (ISO 8601)."),
    step: str = typer.Option("1d", "--step", help="Step: e.g. 1d, 6h."),
    platform: str = typer.Option(None, "--platform", help="Only this platform."),
    approve: bool = typer.Option(False, "--approve", help="Take approvals as given at once."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Replay a ladder over the recorded history without writing anything.

    Example: takedown policy simulate examples/ladders/ru-2021.toml --from 2021-03-01
    --to 2021-06-01 --step 1d --platform twitter
    """
    from takedown.policy import measures, spec

    ladder = spec.load(file)
    results = measures.simulate(
        common.database(),
        ladder,
        common.at_time(start, "--from"),
        common.at_time(end, "--to"),
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
    _print_proposals(props, f"what-if: {ladder.label}")
