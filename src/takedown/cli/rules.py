"""`takedown rules …`: what the directives in force would hit."""

from __future__ import annotations

from pathlib import Path

import typer

from takedown.cli import common

app = typer.Typer(help="Directive rules and their collateral.", no_args_is_help=True)


@app.command("check")
def check(
    against: list[Path] = typer.Option(
        None, "--against", help="More reference hosts: a Citizen Lab CSV or one host per line."
    ),
    resolved: Path = typer.Option(
        None, "--resolved", help="Resolved names: 'host ip [ip…]' per line."
    ),
    at: str = typer.Option(None, "--at", help="ISO 8601 time (default: now)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Compile the directives in force and report every unrelated host or address they hit.

    Exit code 1 when there is collateral. Example:
    takedown rules check --against extra-hosts.txt --resolved resolved.txt
    """
    from takedown.feed.publisher import check as do_check
    from takedown.match import read_resolved

    now = common.at_time(at, "--at")
    mapping = read_resolved(resolved) if resolved else None
    compiled, report = do_check(common.database(), now, against=against or (), resolved=mapping)
    if json_out:
        data = report.as_json()
        data["directives"] = len(compiled.directives.directives)
        common.print_json(data)
    else:
        common.print_table(
            ("directive", "action", "hosts", "IP ranges", "scope", "expires"),
            (
                (
                    d.id,
                    d.describe(),
                    ", ".join(h.pattern for h in d.hosts),
                    ", ".join(d.ip_ranges),
                    ", ".join(f"{k} {v:g}%" for k, v in sorted(d.scope.items())),
                    d.expires,
                )
                for d in compiled.directives.directives
            ),
        )
        for line in report.lines():
            common.console.print(line, highlight=False)
        common.console.print(
            f"{len(compiled.directives.directives)} directive(s) checked against "
            f"{report.hosts_checked} reference host(s): "
            + ("COLLATERAL" if report.collateral else "no collateral")
        )
    if report.collateral:
        raise typer.Exit(1)
