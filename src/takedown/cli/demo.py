"""`takedown demo`: the 2021 case replayed end to end, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from takedown.cli import common

if TYPE_CHECKING:
    from takedown.sim.scenario import Progress


def _progress_table(p: Progress) -> Table:
    """The live view of a running demo."""
    table = Table(title=f"takedown demo — step {p.step}/{p.steps}", show_header=False)
    table.add_row("simulated date", f"{p.now:%a %d %b %Y %H:%M} UTC")
    share = "–" if p.removed_share is None else f"{100 * p.removed_share:.1f}%"
    table.add_row("items left", f"{p.remaining:,} (removed or withheld: {share})")
    table.add_row("measures in force", "; ".join(p.measures) or "none")
    rates = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(p.last_rates.items()))
    table.add_row("last measured kbit/s", rates or "–")
    return table


def _print_services(urls: dict[str, str], sim_port: int, logins: dict[str, str]) -> None:
    """Where the services left running are, the console's demo logins, and a transfer to
    try through the proxy."""
    for name, url in urls.items():
        common.console.print(f"{name:>9}: {url}")
    for name, password in logins.items():
        common.console.print(f"{'login':>9}: {name} / {password}", highlight=False)
    common.console.print(
        "try: curl -p -x " + urls["enforce"] + " --connect-to "
        f"pbs.twimg.com:80:127.0.0.1:{sim_port} "
        "http://pbs.twimg.com/_sim/stream/100000 -o /dev/null "
        "-w '%{speed_download} bytes/s\\n'",
        soft_wrap=True,
        highlight=False,
    )
    common.console.print("services are running; Ctrl-C stops them")


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Directory for the run."),
    days_per_second: float = typer.Option(
        0.0, "--days-per-second", help="Pace the simulated clock (0: as fast as it goes)."
    ),
    items: int = typer.Option(6200, "--items", min=10, help="Items flagged to the platform."),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the services up afterwards (Ctrl-C stops them)."
    ),
    base_port: int = typer.Option(8470, "--base-port", help="First of five loopback ports."),
    behaviour: Path = typer.Option(None, "--behavior", "--behaviour", help="Platform TOML."),
    ladder: Path = typer.Option(None, "--ladder", help="Enforcement ladder TOML."),
    measure_seconds: float = typer.Option(2.0, "--measure-seconds", help="Per transfer."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """Replay 1 March – 1 June 2021 with real services on loopback; write DIR/report.html.

    Example: takedown demo --out demo-out && xdg-open demo-out/report.html
    """
    from rich.live import Live

    from takedown.sim.report import PointLine
    from takedown.sim.scenario import Demo, DemoOptions
    from takedown.sim.services import install_signal_handlers, wait_forever

    opts = DemoOptions(
        out=out,
        items=items,
        days_per_second=days_per_second,
        keep_running=keep_running,
        base_port=base_port,
        behaviour=behaviour,
        ladder=ladder,
        measure_seconds=measure_seconds,
    )

    restore = install_signal_handlers()
    show = not json_out and common.err_console.is_terminal
    try:
        with (
            Demo(opts) as run,
            Live(console=common.err_console, auto_refresh=False, transient=False) as live,
        ):
            if show:
                run.on_progress = lambda p: live.update(_progress_table(p), refresh=True)
            result = run.run()
            live.stop()
            if json_out:
                common.print_json(
                    {
                        "out": str(result.out),
                        "report": str(result.report),
                        "statement": result.statement,
                        "urls": result.urls,
                        "logins": result.logins,
                        "points": result.points,
                    }
                )
            else:
                common.console.print(result.statement, highlight=False)
                for point in result.points:
                    common.console.print(PointLine.of(point).text(), highlight=False)
                common.console.print(f"report: {result.report}")
            if keep_running:
                _print_services(result.urls, run.ports["sim"], result.logins)
                wait_forever()
    except KeyboardInterrupt:
        raise common.fail("interrupted; every service was stopped", 130) from None
    finally:
        restore()
