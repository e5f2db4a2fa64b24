"""`takedown verify`, `takedown status`, `takedown ledger rebuild`."""

from __future__ import annotations

from datetime import datetime

import typer

from takedown.cli import common

ledger_app = typer.Typer(help="The compliance ledger.", no_args_is_help=True)


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
    json_out: bool = typer.Option(False, "--json", help="Machine output (summary)."),
) -> None:
    """Check items from a vantage point; resume the vantage point's unfinished round first.

    Example: takedown verify --platform twitter --concurrency 200
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from takedown.clock import clock_from_env
    from takedown.verify.probe import ProbeSettings, parse_connect_to
    from takedown.verify.runner import Runner, RunOptions
    from takedown.verify.vantage import get_vantage

    db = common.database()
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


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _hours(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} h"


def status(
    platform: str = typer.Option(None, "--platform", help="One platform (default: each)."),
    at: str = typer.Option(None, "--at", help="As of this ISO 8601 time (default: now)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
    statement_out: bool = typer.Option(False, "--statement", help="Plain-language statement."),
    by_category: bool = typer.Option(False, "--by-category", help="One row per category."),
) -> None:
    """Compliance figures per platform. Example: takedown status --platform twitter --json"""
    from rich.table import Table
    from sqlalchemy import select

    from takedown import ledger
    from takedown.clock import parse_time
    from takedown.errors import InputError
    from takedown.store.schema import Platform

    if at is not None:
        try:
            now: datetime = parse_time(at)
        except ValueError:
            raise InputError(f"not an ISO 8601 time: {at!r}", where="--at") from None
    else:
        now = common.now()
    db = common.database()
    with db.reading() as session:
        slugs = (
            [platform]
            if platform
            else list(session.scalars(select(Platform.slug).order_by(Platform.slug)).all())
        )
        rows = []
        for slug in slugs:
            if at is None:
                rows += ledger.status_fast(session, slug, now, by_category=by_category)
            else:
                rows += ledger.status_from_facts(session, slug, now, by_category=by_category)
    if json_out:
        out = [ledger.figures_json(f) for f in rows]
        common.print_json(out[0] if platform and not by_category and len(out) == 1 else out)
        return
    if statement_out:
        for f in rows:
            common.console.print(ledger.statement(f), highlight=False, soft_wrap=True)
        return
    table = Table(
        "platform",
        *(["category"] if by_category else []),
        "flagged",
        "removed",
        "withheld",
        "claimed",
        "remaining",
        "overdue",
        "removed %",
        "on time %",
        "TTR median",
        "TTR p90",
        title=f"as of {now.isoformat()}",
    )
    for f in rows:
        table.add_row(
            f.platform,
            *([f.category or ""] if by_category else []),
            f"{f.flagged:,}",
            f"{f.removed:,}",
            f"{f.restricted:,}",
            f"{f.claimed:,}",
            f"{f.remaining:,}",
            f"{f.overdue:,}",
            _pct(f.removed_share),
            _pct(f.on_time_share),
            _hours(f.ttr_median_h),
            _hours(f.ttr_p90_h),
        )
    common.console.print(table)


@ledger_app.command("rebuild")
def ledger_rebuild(json_out: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """Recompute the item-state projection from the facts (notices, responses, checks)."""
    from takedown import ledger
    from takedown.store import audit

    db = common.database()
    now = common.now()
    with db.session() as session:
        changed = ledger.rebuild_projection(session, now)
        audit.record(
            session,
            at=now,
            actor=common.actor(),
            type="ledger.rebuilt",
            payload={"changed": changed},
        )
    if json_out:
        common.print_json({"changed": changed})
    else:
        common.console.print(f"projection rebuilt: {changed} items changed")
