"""`takedown operator add|list|token` and `takedown operators status`: the network
operators whose enforcement points report back, and the fleet's state."""

from __future__ import annotations

from typing import Any

import typer

from takedown.cli import common

app = typer.Typer(help="Network operators: their report tokens.", no_args_is_help=True)
fleet_app = typer.Typer(help="The fleet of enforcement points: its state.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Short name: lower-case letters, digits, '-'."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Register an operator and print its report token once (only its SHA-256 and the
    public key derived from it are stored).

    Example: takedown operator add rostelecom --json
    """
    from takedown.fleet import store

    op_id, token = store.add_operator(
        common.database(), name, now=common.now(), actor=common.principal()
    )
    if as_json:
        common.print_json({"id": op_id, "name": name, "state": "added", "token": token})
        return
    common.err_console.print(f"operator {name} (id {op_id}); report token, shown once:")
    print(token)


@app.command("token")
def token(
    name: str = typer.Argument(..., help="The operator."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Issue a new report token (shown once); the operator's older tokens stop working.

    Example: takedown operator token rostelecom
    """
    from takedown.fleet import store

    value = store.issue_token(common.database(), name, now=common.now(), actor=common.principal())
    if as_json:
        common.print_json({"name": name, "state": "issued", "token": value})
        return
    common.err_console.print(f"new report token for {name}, shown once:")
    print(value)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """Operators with their active tokens, reporting points and last report.

    Example: takedown operator list --json
    """
    from takedown.fleet import store

    rows = store.list_operators(common.database())
    if as_json:
        common.print_json([r.as_json() for r in rows])
        return
    common.print_table(
        ("name", "created", "tokens", "points", "last report"),
        ((r.name, r.created_at, r.tokens, r.points, r.last_report_at or "-") for r in rows),
    )


def _rates(rates: dict[str, float]) -> str:
    return "; ".join(f"{k} {v / 1000:.1f} kbit/s" for k, v in sorted(rates.items())) or "-"


@fleet_app.command("status")
def status(
    max_lag: int = typer.Option(
        3, "--max-lag", min=0, help="Flag points more publications behind than this."
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 when any operator is flagged."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Per operator and point: sequence applied, lag behind the latest publication (in
    publications), last report age, fail-open and silent points (no report for 10 minutes),
    throughput under each measure; flagged operators marked.

    Example: takedown operators status --max-lag 3 --json
    """
    from takedown.fleet import store

    result = store.status(common.database(), common.now(), max_lag=max_lag)
    flagged = [o.name for o in result if o.flagged]
    if as_json:
        common.print_json([o.as_json() for o in result])
    else:
        rows: list[tuple[Any, ...]] = []
        for o in result:
            flags = ", ".join(o.flags) or "ok"
            if not o.points:
                rows.append((o.name, flags, "-", "", "", "", "", "", "-"))
            for p in o.points:
                rows.append(
                    (
                        o.name,
                        flags,
                        p.point_id,
                        p.sequence if p.sequence is not None else "-",
                        p.lag,
                        f"{p.last_report_age_seconds:.0f} s",
                        "yes" if p.fail_open else "no",
                        "yes" if p.silent else "no",
                        _rates(p.throughput_bps),
                    )
                )
        common.print_table(
            ("operator", "flags", "point", "sequence", "lag", "last report", "fail open",
             "silent", "throughput"),
            rows,
            title=f"latest publication: {result[0].latest_sequence if result else '-'}",
        )  # fmt: skip
    if check and flagged:
        raise common.fail(f"flagged: {', '.join(flagged)}")
