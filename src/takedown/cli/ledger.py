"""`takedown ledger …`: maintenance of the compliance ledger."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="The compliance ledger.", no_args_is_help=True)


@app.command("rebuild")
def rebuild(json_out: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """Recompute the item-state projection from the facts (notices, responses, checks).

    Example: takedown ledger rebuild --json
    """
    from takedown import ledger

    changed = ledger.rebuild_db(common.database(), common.now(), common.actor())
    if json_out:
        common.print_json({"changed": changed})
    else:
        common.console.print(f"projection rebuilt: {changed} items changed")
