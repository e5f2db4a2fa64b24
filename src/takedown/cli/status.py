"""`takedown status`: the compliance figures per platform, rendered from ``ledger.status``.

Library imports are inside the command, like the other command modules, so that
``takedown --help`` does not load the database layer.
"""

from __future__ import annotations

import typer

from takedown.cli import common


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _hours(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} h"


def status(
    platform: str = typer.Option(None, "--platform", help="One platform (default: each)."),
    at: str = typer.Option(None, "--at", help="As of this ISO 8601 time (default: now)."),
    json_out: bool = typer.Option(
        False, "--json", help="Machine output: an object for --platform, else an array."
    ),
    statement_out: bool = typer.Option(
        False, "--statement", help="Plain-language statement (with --json: a statement field)."
    ),
    by_category: bool = typer.Option(False, "--by-category", help="One row per category."),
) -> None:
    """Compliance figures per platform.

    Example: takedown status --platform twitter --statement --json
    """
    from takedown import ledger

    as_of = common.at_time(at, "--at") if at is not None else None
    result = ledger.status(
        common.database(),
        common.now() if as_of is None else as_of,
        platform=platform,
        at=as_of,
        by_category=by_category,
    )
    if json_out:
        data = result.as_json()
        if statement_out:
            docs = data if isinstance(data, list) else [data]
            for row, text in zip(docs, result.statements(), strict=True):
                row["statement"] = text
        common.print_json(data)
        return
    if statement_out:
        for text in result.statements():
            common.console.print(text, highlight=False, soft_wrap=True)
        return
    columns = ("platform", *(["category"] if by_category else []), "flagged", "removed",
               "withheld", "claimed", "remaining", "overdue", "removed %", "on time %",
               "TTR median", "TTR p90", "re-uploads", "re-uploads removed")  # fmt: skip
    rows = (
        (
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
            f"{f.reuploads_found:,}",
            f"{f.reuploads_removed:,}",
        )
        for f in result.figures
    )
    common.print_table(columns, rows, title=f"as of {common.timestamp(result.as_of)}")
