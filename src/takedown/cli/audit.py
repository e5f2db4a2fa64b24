"""`takedown audit`: verify and list the hash-chained audit log."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(
    against: list[str] = typer.Option(
        None,
        "--against",
        help="A feed directory or URL: the chain must still hold every head it published.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Walk the event chain and report the first broken link; with --against, also check
    that the chain still holds every audit head that feed has published, so a cut or a
    rewrite after a publication shows. Events after the last publication are anchored by
    nothing yet.

    Example: takedown audit verify --against http://127.0.0.1:8470/feed/ --against old-copy/
    """
    from takedown.feed.anchors import verify_against

    report, anchors, notes = verify_against(common.database(), against or ())
    if json_out:
        doc: dict[str, object] = {
            "ok": report.ok and (anchors is None or anchors.ok),
            "events": report.events,
            "first_broken": report.first_broken,
            "problem": report.problem,
        }
        if anchors is not None:
            doc["anchors"] = {
                "checked": anchors.checked,
                "newest": anchors.newest.to_json() if anchors.newest else None,
                "problems": list(anchors.problems),
                "notes": notes,
            }
        common.print_json(doc)
    else:
        for line in notes:
            common.err_console.print(line, highlight=False)
        if report.ok:
            common.console.print(f"audit chain intact: {report.events} events")
        if anchors is not None and anchors.ok:
            newest = f"newest event {anchors.newest.seq}" if anchors.newest else "none found"
            common.console.print(
                f"holds all {anchors.checked} published heads ({newest}); later events are "
                "not anchored yet"
            )
    if not report.ok:
        raise common.fail(f"audit chain broken at event {report.first_broken}: {report.problem}")
    if anchors is not None and not anchors.ok:
        raise common.fail(f"audit chain does not hold a published head: {anchors.problems[0]}")


@app.command("list")
def list_(
    limit: int = typer.Option(50, "--limit", help="Show the last N events."),
    type_: str = typer.Option(None, "--type", help="Only events of this type."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show recent events (on a terminal, payloads cut to 80 characters; piped or --json,
    whole).

    Example: takedown audit list --type measure.approved --limit 10 --json
    """
    from takedown.store.audit import recent_events

    rows = recent_events(common.database(), limit=limit, type_=type_)
    if json_out:
        common.print_json(rows)
        return
    common.print_table(
        ("seq", "at", "actor", "type", "payload"),
        ((r["seq"], r["at"], r["actor"], r["type"], _payload(r["payload"])) for r in rows),
    )


def _payload(payload: object) -> str:
    """A payload as a cell: whole JSON when piped, the first 80 characters on a terminal."""
    import json

    text = json.dumps(common.plain(payload), ensure_ascii=False, sort_keys=True)
    return text if not common.console.is_terminal or len(text) <= 80 else text[:79] + "…"
