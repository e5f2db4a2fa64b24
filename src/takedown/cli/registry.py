"""`takedown registry …`: the register of restricted items."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TimeRemainingColumn,
)

from takedown.cli import common
from takedown.errors import UsageError

if TYPE_CHECKING:
    from takedown.registry.formats import ReadDefaults
    from takedown.registry.sync import SyncResult
    from takedown.store.db import Database

app = typer.Typer(help="The register of restricted items.", no_args_is_help=True)

ImportFormat = Literal["rkn-csv", "rkn-xml", "citizenlab", "jsonl", "csv"]
SyncFormat = Literal["rkn-csv", "rkn-xml", "citizenlab", "jsonl"]
ExportFormat = Literal["jsonl", "csv", "rkn-csv", "rpz", "nft", "hosts"]
FORMAT_HELP = (
    "The file's format. jsonl and csv rows state their legal basis; the others need "
    "--basis (an RKN dump names the authority and decision, not the law)."
)

# options the commands that read register files share
PLATFORM = typer.Option(None, "--platform", help="Platform slug for every item.")
CATEGORY = typer.Option(None, "--category", help="Category where the file has none.")
BASIS = typer.Option(
    None,
    "--basis",
    help="Legal basis (law and article). Required unless the format states one per row "
    "(jsonl, csv: then for rows that leave it empty).",
)
AUTHORITY = typer.Option(None, "--authority", help="Where an entry names none.")
DECISION = typer.Option(None, "--decision", help="Where an entry's decision is empty.")
SIGNER_CERT = typer.Option(None, "--signer-cert", help="Check the dump's signature.")
SKIP_INVALID = typer.Option(
    False, "--skip-invalid", help="Take the valid rows; write rejected ones to a report file."
)
REPORT = typer.Option(None, "--report", help="Where to write rejected rows.")
ACCEPT_BROAD = typer.Option(
    None,
    "--accept-broad",
    metavar="REASON",
    help="Admit targets broader than the profile allows (public suffixes, wide prefixes); "
    "each is audited with REASON.",
)


def _decision_date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise common.fail(f"--decision-date: not a date (YYYY-MM-DD): {value!r}", 2) from None


@app.command("add")
def add(
    target: str = typer.Argument(..., help="URL, domain, *.domain, IP address or CIDR."),
    category: str = typer.Option(..., "--category", "-c", help="Category code."),
    basis: str = typer.Option(..., "--basis", help="Legal basis (law and article)."),
    decision: str = typer.Option(..., "--decision", help="Decision reference."),
    authority: str = typer.Option(None, "--authority", help="Authority that decided."),
    decision_date: str = typer.Option(None, "--decision-date", help="YYYY-MM-DD."),
    platform: str = typer.Option(None, "--platform", help="Platform slug."),
    accept_broad: str = ACCEPT_BROAD,
    json_out: bool = typer.Option(False, "--json", help="Machine output: the item."),
) -> None:
    """Add one item to the register.

    Example: takedown registry add https://twitter.com/x/status/1 --category suicide
    --basis "149-FZ art. 15.1" --decision 27-31-2021/Ид1 --platform twitter --json
    """
    from takedown.model import Decision, ItemRecord
    from takedown.registry.service import add_item
    from takedown.registry.targets import parse_target_flags

    parsed, flags = parse_target_flags(target, where="TARGET")
    record = ItemRecord(
        target=parsed,
        flags=flags,
        category=category,
        basis=basis,
        decision=Decision(decision, authority, _decision_date(decision_date)),
        platform=platform,
        source="cli",
    )
    db = common.database()
    item_id, created = add_item(
        db, record, now=common.now(), actor=common.actor(), accept_broad=accept_broad
    )
    if json_out:
        common.print_json({**_item(db, item_id), "created": created})
    elif created:
        common.console.print(f"item {item_id}: {record.target.value}")
    else:
        common.console.print(f"item {item_id} already lists {record.target.value} under {decision}")


def _item(db: Database, item_id: int) -> dict[str, Any]:
    """An item as ``registry show --json`` prints it."""
    from takedown.registry.formats._base import entry_fields
    from takedown.registry.service import get_item

    entry, item = get_item(db, item_id)
    data = entry_fields(entry)
    data.update(deadline_at=item.deadline_at, delist_decision=item.delist_decision)
    return data


def _require_basis(fmt: str, basis: str | None) -> None:
    """The legal basis an import or sync needs, as ``registry add`` needs one: from
    --basis, or from the rows of a format that states it."""
    from takedown.registry.formats import STATES_BASIS

    if not basis and fmt not in STATES_BASIS:
        raise UsageError(
            f"required with --format {fmt}, whose files state no legal basis (only jsonl "
            "and csv rows carry their own): give the law and article the decisions apply",
            where="--basis",
        )


def _defaults(
    category: str | None,
    basis: str | None,
    platform: str | None,
    authority: str | None,
    decision: str | None,
) -> ReadDefaults:
    from takedown.registry.formats import ReadDefaults

    return ReadDefaults(
        category=category or "other",
        basis=basis or "",
        platform=platform,
        authority=authority,
        decision=decision,
    )


@contextlib.contextmanager
def _reading(file: Path, json_out: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar over the bytes of ``file`` (on a terminal, not with --json)."""
    size = file.stat().st_size if file.exists() else 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=common.err_console,
        disable=json_out or not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(f"reading {file.name}", total=size)
        yield lambda n: progress.advance(task, n)


@contextlib.contextmanager
def _rows_progress(
    db: Database, fmt: str, category: str | None, platform: str | None
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the rows an export reads, on a terminal only."""
    if not sys.stderr.isatty():
        yield None
        return
    from takedown.registry.service import export_size

    total = export_size(db, fmt, category=category, platform=platform)
    with Progress(
        f"exporting {fmt}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=common.err_console,
    ) as progress:
        task = progress.add_task(fmt, total=total)
        yield lambda n: progress.advance(task, n)


def _report(result: SyncResult, json_out: bool, verb: str) -> None:
    """Print what an import or sync did; fail (non-zero) if it changed nothing by error."""
    if json_out:
        common.print_json(result.summary())
    if result.refused:
        raise common.fail(f"{result.path}: refused: {result.refused}; nothing changed")
    if not result.committed and not result.plan:
        if not json_out:
            for line in result.errors:
                common.err_console.print(line, highlight=False, soft_wrap=True)
        more = result.rejected - len(result.errors)
        extra = f" (and {more} more)" if more > 0 else ""
        raise common.fail(
            f"{result.rejected} invalid row(s){extra}; nothing {verb} "
            "(fix them, or use --skip-invalid)"
        )
    if json_out:
        return
    out = common.console
    stamp = common.timestamp(result.updated_at) if result.updated_at else "not stated"
    signature = result.signature or "signature not checked"
    out.print(
        f"{result.path} ({result.format}, register updated {stamp}; {signature})",
        highlight=False,
        soft_wrap=True,
    )
    what = "would be" if result.plan else "were"
    out.print(
        f"read {result.entries} entries ({result.targets} targets); {result.rejected} rejected"
        + (f" (see {result.report})" if result.report else "")
        + f", {result.duplicates} repeated in the file",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"source {result.source}: {result.added} entries {what} added "
        f"({result.items_added} items), {result.changed} changed, {result.delisted} delisted, "
        f"{result.unchanged} already present",
        highlight=False,
        soft_wrap=True,
    )
    if result.plan:
        for kind, shown in result.examples.items():
            for line in shown:
                out.print(f"  {kind}: {line}", highlight=False, soft_wrap=True)
        out.print("plan only: nothing changed")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="Register file."),
    fmt: ImportFormat = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
    source: str = typer.Option("default", "--source", help="The register it adds to."),
    platform: str = PLATFORM,
    category: str = CATEGORY,
    basis: str = BASIS,
    authority: str = AUTHORITY,
    decision: str = DECISION,
    signer_cert: Path = SIGNER_CERT,
    skip_invalid: bool = SKIP_INVALID,
    report: Path = REPORT,
    accept_broad: str = ACCEPT_BROAD,
    json_out: bool = typer.Option(False, "--json", help="Machine output: what was added."),
) -> None:
    """Add a register file's new entries, in one transaction (nothing changes if a row is bad).

    Example: takedown registry import examples/registers/rkn-sample.csv --format rkn-csv
    --basis "149-FZ" --json
    """
    from takedown.registry.service import import_file

    _require_basis(fmt, basis)
    with _reading(file, json_out) as on_read:
        result = import_file(
            common.database(),
            file,
            fmt,
            now=common.now(),
            actor=common.actor(),
            source=source,
            skip_invalid=skip_invalid,
            defaults=_defaults(category, basis, platform, authority, decision),
            report_path=report,
            signer_cert=signer_cert,
            accept_broad=accept_broad,
            on_read=on_read,
        )
    _report(result, json_out, "imported")


@app.command("sync")
def sync(
    file: Path = typer.Argument(..., help="The whole current register of the source."),
    fmt: SyncFormat = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
    source: str = typer.Option(..., "--source", help="The register this file is a snapshot of."),
    plan: bool = typer.Option(False, "--plan", help="Print what would change; change nothing."),
    allow_older: bool = typer.Option(
        False, "--allow-older", help="Sync a snapshot older than the last one synced."
    ),
    max_delist: float = typer.Option(
        10.0, "--max-delist", help="Refuse to delist more than PCT% of the live entries."
    ),
    platform: str = PLATFORM,
    category: str = CATEGORY,
    basis: str = BASIS,
    authority: str = AUTHORITY,
    decision: str = DECISION,
    signer_cert: Path = SIGNER_CERT,
    skip_invalid: bool = SKIP_INVALID,
    report: Path = REPORT,
    accept_broad: str = ACCEPT_BROAD,
    json_out: bool = typer.Option(False, "--json", help="Machine output: what changed."),
) -> None:
    """Make a source's entries what FILE says: add, update, delist (one transaction).

    Example: takedown registry sync examples/registers/rkn-sample.xml --format rkn-xml
    --source rkn --basis "149-FZ" --authority "Роскомнадзор" --plan
    """
    from takedown.registry.sync import read_register

    _require_basis(fmt, basis)
    with _reading(file, json_out) as on_read:
        result = read_register(
            common.database(),
            file,
            fmt,
            source=source,
            mode="sync",
            now=common.now(),
            actor=common.actor(),
            plan=plan,
            allow_older=allow_older,
            max_delist=max_delist,
            defaults=_defaults(category, basis, platform, authority, decision),
            skip_invalid=skip_invalid,
            report_path=report,
            signer_cert=signer_cert,
            accept_broad=accept_broad,
            on_read=on_read,
        )
    _report(result, json_out, "synced")


@app.command("export")
def export(
    fmt: ExportFormat = typer.Option(..., "--format", "-f", help="The format to write."),
    output: Path = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    category: str = typer.Option(None, "--category"),
    platform: str = typer.Option(None, "--platform"),
    widen_url_hosts: str = typer.Option(
        None,
        "--widen-url-hosts",
        metavar="REASON",
        help="Also block URL entries' hosts (rpz, hosts) or hint addresses (nft); prints "
        "who else that hits, and audits REASON.",
    ),
) -> None:
    """Export the register for resolvers, firewalls and other registers.

    Example: takedown registry export --format rpz -o blocklist.rpz
    """
    from takedown.registry.service import export as do_export
    from takedown.registry.service import record_widening, widen

    db = common.database()
    widening = None
    if widen_url_hosts is not None:
        if not widen_url_hosts.strip():
            raise common.fail("--widen-url-hosts: give the reason for widening", 2)
        widening = widen(db, fmt, category=category, platform=platform)
        for line in widening.report:
            common.err_console.print(f"widened {line}", highlight=False, soft_wrap=True)

    def write(out: BinaryIO) -> int:
        with _rows_progress(db, fmt, category, platform) as on_rows:
            count = do_export(
                db, fmt, out, now=common.now(), category=category, platform=platform,
                widening=widening, on_rows=on_rows,
            )  # fmt: skip
        if widening is not None:  # audited once written, with its reason
            record_widening(
                db, fmt, widening, widen_url_hosts, now=common.now(), actor=common.actor()
            )
        return count

    if output is None:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    tmp = output.with_name(output.name + ".part")
    try:
        with tmp.open("wb") as out:
            count = write(out)
        tmp.replace(output)
    except OSError as exc:
        raise common.fail(f"{output}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    unit = "entries" if fmt == "rkn-csv" else "item(s)"
    common.err_console.print(f"wrote {count} {unit} to {output}")


@app.command("list")
def list_(
    category: str = typer.Option(None, "--category"),
    platform: str = typer.Option(None, "--platform"),
    limit: int = typer.Option(100, "--limit", help="At most N rows (0: all)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: a JSON array."),
    jsonl_out: bool = typer.Option(
        False, "--jsonl", help="Machine output as a stream: one JSON object per line."
    ),
) -> None:
    """List register items.

    Example: takedown registry list --platform twitter --limit 0 --jsonl > items.jsonl
    """
    from takedown.registry.formats._base import entry_fields as entry_to_dict
    from takedown.registry.service import read_entries

    if json_out and jsonl_out:
        raise UsageError("--json or --jsonl, not both", where="--jsonl")
    entries = read_entries(
        common.database(), category=category, platform=platform, limit=limit or None
    )
    if jsonl_out:  # streamed: the register may be large
        common.print_jsonl(entry_to_dict(entry) for entry in entries)
        return
    if json_out:
        common.print_json([entry_to_dict(entry) for entry in entries])
        return
    common.print_table(
        ("id", "target", "category", "platform", "decision", "state"),
        (
            (e.id, e.record.target.value, e.record.category, e.record.platform,
             e.record.decision.reference, e.state.value)
            for e in entries
        ),
    )  # fmt: skip


@app.command("show")
def show(
    item_id: int = typer.Argument(...),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Show one item with its legal basis and provenance.

    Example: takedown registry show 1 --json
    """
    data = _item(common.database(), item_id)
    if json_out:
        common.print_json(data)
        return
    common.print_table(("field", "value"), data.items())


@app.command("delist")
def delist(
    item_id: int = typer.Argument(...),
    decision: str = typer.Option(..., "--decision", help="The decision that delists it."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the item."),
) -> None:
    """Delist an item by a new decision.

    Example: takedown registry delist 1 --decision 27-31-2021/Ид2 --json
    """
    from takedown.registry.service import delist as do_delist

    db = common.database()
    do_delist(db, item_id, decision, now=common.now(), actor=common.actor())
    if json_out:
        common.print_json(_item(db, item_id))
        return
    common.console.print(f"item {item_id} delisted under {decision}", highlight=False)


@app.command("evidence")
def evidence(
    item_id: int = typer.Argument(..., help="The item the media belongs to."),
    file: Path = typer.Argument(None, help="The media file (or --fetch).", show_default=False),
    fetch: bool = typer.Option(False, "--fetch", help="Fetch the media from the item's URL."),
    keep: bool = typer.Option(
        False, "--keep", help="Also keep the media itself (never for CSAM items)."
    ),
    keep_dir: Path = typer.Option(
        Path("evidence"), "--keep-dir", help="Where --keep stores media, by SHA-256."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the evidence."),
) -> None:
    """Record an item's media as evidence: its SHA-256 and PDQ hash with quality (video:
    SHA-256 only). The media itself is not stored unless --keep.

    Example: takedown registry evidence 42 photo.jpg --json
    """
    from takedown.media import fetch as media_fetch
    from takedown.media.store import record_evidence

    if (file is None) == (not fetch):
        raise UsageError("give one of FILE and --fetch", where="FILE")
    db = common.database()
    if fetch:
        _, item = _get_item(db, item_id)
        data = media_fetch.fetch_media(item.target, where="--fetch")
        source = item.target
    else:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise common.fail(f"{file}: cannot read: {exc.strerror}") from None
        source = file.name
    ev = record_evidence(
        db,
        item_id,
        data,
        source=source,
        now=common.now(),
        actor=common.actor(),
        keep_dir=keep_dir if keep else None,
    )
    if json_out:
        common.print_json(ev.as_json())
        return
    what = f"PDQ {ev.pdq} quality {ev.quality}" if ev.pdq else f"{ev.kind}, SHA-256 only"
    verb = "recorded" if ev.created else "already recorded"
    common.console.print(f"item {item_id}: evidence {ev.id} {verb}: {what}", highlight=False)


def _get_item(db: Database, item_id: int) -> Any:
    from takedown.registry.service import get_item

    return get_item(db, item_id)
