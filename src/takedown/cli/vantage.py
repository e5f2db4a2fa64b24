"""`takedown vantage`: add and list the vantage points probes run from."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="Vantage points probes run from.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Name of the vantage point."),
    country: str = typer.Option(None, "--country", help="Two-letter country code."),
    in_country: bool = typer.Option(
        True, "--in-country/--abroad", help="Do its checks decide item state?"
    ),
    source: str = typer.Option(None, "--source", help="Source IP address to probe from."),
    proxy: str = typer.Option(None, "--proxy", help="http(s)://HOST:PORT proxy to probe through."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Add a vantage point. Example: takedown vantage add msk-1 --country RU --in-country"""
    from dataclasses import asdict

    from takedown.verify.vantage import Vantage, add_vantage

    v = add_vantage(
        common.database(),
        Vantage(name, country, in_country, source, proxy),
        now=common.now(),
        actor=common.actor(),
    )
    if json_out:
        common.print_json(asdict(v))
    else:
        common.console.print(f"vantage point {v.name} ({v.id}) added")


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """List vantage points.

    Example: takedown vantage list --json
    """
    from dataclasses import asdict

    from takedown.verify.vantage import list_vantages

    rows = list_vantages(common.database())
    if json_out:
        common.print_json([asdict(v) for v in rows])
        return
    common.print_table(
        ("name", "country", "in country", "source", "proxy"),
        (
            (v.name, v.country, "yes" if v.in_country else "no", v.source_address, v.proxy)
            for v in rows
        ),
    )
