"""`takedown verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from takedown.cli import common


def verify(
    platform: str = typer.Option(None, "--platform", help="Only items of this platform."),
    concurrency: int = typer.Option(100, "--concurrency", min=1, max=10000, help="Probes at once."),
    vantage: str = typer.Option(None, "--vantage", help="Vantage point name (default: local)."),
    only_open: bool = typer.Option(False, "--only-open", help="Only open and claimed items."),
    worker: bool = typer.Option(
        False, "--worker", help="Join the open round with other workers (PostgreSQL)."
    ),
    connect_to: list[str] = typer.Option(
        None, "--connect-to", help="HOST=URL: reach HOST at URL instead (repeatable)."
    ),
    only_loopback: bool = typer.Option(
        False, "--only-loopback", help="Refuse any destination that is not this machine."
    ),
    total_timeout: float = typer.Option(20.0, "--total-timeout", help="Seconds per probe."),
    retries: int = typer.Option(2, "--retries", min=0, max=10, help="Retries on network errors."),
    reuploads: Path = typer.Option(
        None,
        "--reuploads",
        metavar="URLS_FILE",
        help="Instead: fetch these URLs (one a line) and flag those serving a listed "
        "item's media as re-uploads of it.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output (summary)."),
) -> None:
    """Check items from a vantage point; resume the vantage point's unfinished round first.

    Example: takedown verify --platform twitter --concurrency 200
    Example: takedown verify --reuploads urls.txt --json
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from takedown.clock import clock_from_env
    from takedown.verify.probe import ProbeSettings, parse_connect_to
    from takedown.verify.runner import Runner, RunOptions
    from takedown.verify.vantage import get_vantage

    db = common.database()
    if reuploads is not None:
        _reuploads(db, reuploads, vantage, concurrency, connect_to, only_loopback, json_out)
        return
    opts = RunOptions(
        vantage=get_vantage(db, vantage),
        platform=platform,
        only_open=only_open,
        settings=ProbeSettings(
            concurrency=concurrency,
            per_host=max(1, min(concurrency, 64)),
            total_timeout=total_timeout,
            retries=retries,
        ),
        connect_to=parse_connect_to(connect_to or []),
        only_loopback=only_loopback,
        worker=worker,
        actor=common.actor(),
    )
    show = not json_out and common.console.is_terminal
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=common.err_console,
        disable=not show,
        transient=True,
    ) as progress:
        bar = progress.add_task("checking", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        summary = Runner(db, opts, clock=clock_from_env(), on_progress=on_progress).run()
    data = summary.as_dict() | {"vantage": opts.vantage.name}
    if json_out:
        common.print_json(data)
        return
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())) or "none"
    common.console.print(
        f"round {summary.round_id}{' (resumed)' if summary.resumed else ''}: "
        f"{summary.checked} checks from {opts.vantage.name} ({verdicts}); "
        f"{summary.reopened} reopened; {'finished' if summary.finished else 'not finished'}"
    )


def _reuploads(
    db: Any,
    urls_file: Path,
    vantage: str | None,
    concurrency: int,
    connect_to: list[str] | None,
    only_loopback: bool,
    json_out: bool,
) -> None:
    from takedown.verify.probe import ProbeSettings, parse_connect_to
    from takedown.verify.reuploads import check_reuploads, read_urls
    from takedown.verify.vantage import get_vantage

    urls = read_urls(urls_file)
    summary = check_reuploads(
        db,
        urls,
        now=common.now(),
        actor=common.actor(),
        vantage=get_vantage(db, vantage),
        settings=ProbeSettings(concurrency=concurrency, per_host=max(1, min(concurrency, 64))),
        connect_to=parse_connect_to(connect_to or []),
        only_loopback=only_loopback,
    )
    if json_out:
        common.print_json(summary.as_dict())
        return
    common.print_table(
        ("url", "item", "distance", "new"),
        ((f["url"], f["item_id"], f["distance"], f["new"]) for f in summary.found),
    )
    common.err_console.print(
        f"{summary.checked} URLs checked ({summary.images} images): {len(summary.found)} "
        f"re-uploads of listed media, {summary.closed} earlier ones gone, "
        f"{summary.failed} unreachable",
        highlight=False,
    )
