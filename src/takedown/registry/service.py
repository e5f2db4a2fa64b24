"""Register operations over the database; formats live in ``registry.formats``, the
reading of whole register files (import, sync) in ``registry.sync``."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from takedown.errors import Conflict, InputError, NotFound
from takedown.ledger import projection
from takedown.match.matcher import Matcher
from takedown.model import (
    BlockType,
    Decision,
    ItemRecord,
    ItemState,
    RegisterEntry,
    Target,
    TargetKind,
)
from takedown.names import is_ip
from takedown.registry import breadth
from takedown.registry.checks import EntryChecks
from takedown.registry.entries import entry_digest, entry_key, entry_of_item
from takedown.registry.formats import TARGET_WRITERS, WRITERS, ReadDefaults, rkn_csv
from takedown.registry.formats._base import TargetRow, listed_targets
from takedown.registry.store import (
    DEFAULT_SOURCE,
    MANUAL_SOURCE,
    EntryWriter,
    PlatformIds,
    register_row,
)
from takedown.registry.sync import SyncResult, read_register
from takedown.registry.targets import parse_target
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import (
    Entry,
    Item,
    Platform,
    PlatformHost,
    RegisterSource,
    target_key,
)
from takedown.store.streaming import stream_rows, stream_tuples


def import_file(
    db: Database,
    path: str | Path,
    fmt: str,
    *,
    now: datetime,
    actor: str,
    source: str = DEFAULT_SOURCE,
    platform: str | None = None,
    skip_invalid: bool = False,
    defaults: ReadDefaults | None = None,
    report_path: str | Path | None = None,
    signer_cert: Path | None = None,
    accept_broad: str | None = None,
    on_read: Callable[[int], None] | None = None,
) -> SyncResult:
    """Import a register file in one transaction: its new entries are added, entries
    already present are left as they are (``sync`` follows a register that changes).

    Without ``skip_invalid`` any bad row aborts the import and nothing changes; with it,
    valid rows go in and rejected rows are written to ``report_path``.
    """
    defaults = defaults or ReadDefaults(platform=platform)
    if platform and defaults.platform != platform:
        defaults = dataclasses.replace(defaults, platform=platform)
    return read_register(
        db,
        path,
        fmt,
        source=source,
        mode="import",
        now=now,
        actor=actor,
        defaults=defaults,
        skip_invalid=skip_invalid,
        report_path=report_path,
        signer_cert=signer_cert,
        accept_broad=accept_broad,
        on_read=on_read,
    )


def add_item(
    db: Database,
    record: ItemRecord,
    *,
    now: datetime,
    actor: str,
    accept_broad: str | None = None,
) -> tuple[int, bool]:
    """Add one item, as an entry of its own in the ``manual`` register; return (id,
    created). The same live target under the same decision is one item."""
    entry = entry_of_item(record)
    checks = EntryChecks(accept_broad)
    checks.check(entry)
    with db.session() as session:
        existing = session.scalar(
            select(Item.id).where(
                Item.target_key == target_key(record.target.value),
                Item.decision_ref == record.decision.reference,
                Item.delisted_at.is_(None),
            )
        )
        if existing is not None:
            return existing, False
        pid = PlatformIds(session).get(record.platform, "--platform") if record.platform else None
        register = register_row(session, MANUAL_SOURCE, "cli")
        writer = EntryWriter(session, register.id, now, actor)
        entry_id = writer.add(entry, entry_key(entry), entry_digest(entry), pid)
        writer.finish()
        checks.audit(session, now=now, actor=actor)
        item_id = session.scalar(select(Item.id).where(Item.entry_id == entry_id))
        assert item_id is not None
        audit.record(
            session,
            at=now,
            actor=actor,
            type="registry.add",
            payload={
                "item": item_id,
                "entry": entry_id,
                "target": record.target.value,
                "category": record.category,
                "decision": record.decision.reference,
                "platform": record.platform,
            },
        )
        return item_id, True


def delist(
    db: Database,
    item_id: int,
    decision: str,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
) -> None:
    """Delist an item by a new decision (``reason``: why, for the audit log); it leaves the
    figures from ``now``."""
    with db.session() as session:
        delist_in(session, item_id, decision, now=now, actor=actor, reason=reason)


def delist_in(
    session: Session,
    item_id: int,
    decision: str,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
) -> None:
    """``delist`` in the caller's transaction (an appeal's reversal delists with its
    decision)."""
    if not decision.strip():
        raise InputError("delisting needs a decision reference", where="--decision")
    item = session.get(Item, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}")
    if item.delisted_at is not None:
        raise Conflict(f"item {item_id} was already delisted on {item.delisted_at:%Y-%m-%d}")
    session.execute(
        update(Item).where(Item.id == item_id).values(delisted_at=now, delist_decision=decision)
    )
    projection.apply_delist(session, item_id, now)
    if item.entry_id is not None:
        others = select(Item.id).where(
            Item.entry_id == item.entry_id, Item.delisted_at.is_(None), Item.id != item_id
        )
        if session.scalar(others.limit(1)) is None:  # its entry blocks nothing more
            session.execute(update(Entry).where(Entry.id == item.entry_id).values(delisted_at=now))
    audit.record(
        session,
        at=now,
        actor=actor,
        type="registry.delist",
        payload={"item": item_id, "decision": decision} | ({"reason": reason} if reason else {}),
    )


def to_entry(item: Item, platform_slug: str | None) -> RegisterEntry:
    """A stored item as the exporters see it."""
    return _stored(
        (
            item.id,
            item.target,
            item.kind,
            item.host,
            item.category,
            item.basis,
            item.decision_ref,
            item.authority,
            item.decision_date,
            item.platform_id,
            item.listed_at,
            item.source,
            item.flags,
            item.state,
            item.delisted_at,
        ),
        {item.platform_id: platform_slug},
    )


_ITEM_FIELDS = (
    Item.id,
    Item.target,
    Item.kind,
    Item.host,
    Item.category,
    Item.basis,
    Item.decision_ref,
    Item.authority,
    Item.decision_date,
    Item.platform_id,
    Item.listed_at,
    Item.source,
    Item.flags,
    Item.state,
    Item.delisted_at,
)
_KINDS = {k.value: k for k in TargetKind}
_STATES = {s.value: s for s in ItemState}


def _stored(row: tuple, slugs: dict[int | None, str | None]) -> RegisterEntry:
    (iid, target, kind, host, category, basis, ref, authority, date, pid, listed, source,
     flags, state, delisted) = row  # fmt: skip
    record = ItemRecord(
        Target(_KINDS[kind], target, host),
        category,
        basis,
        Decision(ref, authority, date),
        slugs.get(pid),
        listed,
        source,
        tuple(flags.split(",")) if flags else (),
    )
    return RegisterEntry(iid, record, _STATES[state], delisted)


def iter_entries(
    session: Session,
    *,
    category: str | None = None,
    platform: str | None = None,
    include_delisted: bool = True,
    batch: int = 20_000,
) -> Iterator[RegisterEntry]:
    """Stream stored items in id order, a batch at a time (rows, not ORM objects: an
    export of a national register reads millions)."""
    slugs: dict[int | None, str | None] = dict(
        session.execute(select(Platform.id, Platform.slug)).all()
    )
    query = select(*_ITEM_FIELDS).order_by(Item.id)
    if category:
        query = query.where(Item.category == category)
    if platform:
        pid = next((k for k, v in slugs.items() if v == platform), None)
        if pid is None:
            raise NotFound(f"unknown platform {platform!r}", where="--platform")
        query = query.where(Item.platform_id == pid)
    if not include_delisted:
        query = query.where(Item.delisted_at.is_(None))
    for row in stream_rows(session, query, batch):
        yield _stored(row, slugs)


def read_entries(
    db: Database,
    *,
    category: str | None = None,
    platform: str | None = None,
    limit: int | None = None,
) -> Iterator[RegisterEntry]:
    """``iter_entries`` in a read transaction of its own, at most ``limit`` (None: all)."""
    with db.reading() as session:
        yield from itertools.islice(
            iter_entries(session, category=category, platform=platform), limit
        )


ENTRY_LEVEL = "rkn-csv"  # written per entry; the other formats per item
EXPORT_FORMATS = (ENTRY_LEVEL, *WRITERS)


@dataclass
class Widening:
    """The hosts (or hint addresses) of URL entries an export adds, and who else they hit."""

    targets: list[RegisterEntry]
    report: list[str]  # one line per widened name or address


_R = TypeVar("_R")

# what each DNS or address export carries (the writers skip the rest; reading only these
# rows makes an export of a national register a read of the part it writes)
_EXPORTED_KINDS = {
    "rpz": (TargetKind.DOMAIN, TargetKind.WILDCARD),
    "hosts": (TargetKind.DOMAIN, TargetKind.WILDCARD),
    "nft": (TargetKind.IP, TargetKind.CIDR),
}


def export(
    db: Database,
    fmt: str,
    out: BinaryIO,
    *,
    now: datetime,
    category: str | None = None,
    platform: str | None = None,
    widening: Widening | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write the current register in ``fmt``; return the count written (entries for
    ``rkn-csv``, items otherwise). ``widening`` (see ``widen``) adds URL entries' hosts
    to a DNS or address export; ``on_rows`` hears how many rows were read (a progress
    bar over ``export_size``)."""
    if fmt not in EXPORT_FORMATS:
        known = ", ".join(sorted(EXPORT_FORMATS))
        raise InputError(f"unknown format {fmt!r}; known: {known}", where="--format")
    with db.reading() as session:
        if fmt == ENTRY_LEVEL:
            stamp = session.scalar(
                select(RegisterSource.updated_stamp)
                .where(RegisterSource.updated_at.is_not(None))
                .order_by(RegisterSource.updated_at.desc())
                .limit(1)
            )
            updated = datetime.fromisoformat(stamp) if stamp else now
            rows = _entry_rows(session, category=category, platform=platform)
            return rkn_csv.write_lines(_counted(rows, on_rows), out, updated_at=updated)
        kinds = _EXPORTED_KINDS.get(fmt)
        if kinds is None:
            items: Iterable[RegisterEntry] = iter_entries(
                session, category=category, platform=platform
            )
            items = _counted(items, on_rows)
            if widening is not None:
                items = itertools.chain(items, widening.targets)
            return WRITERS[fmt](items, out, generated_at=now)
        rows: Iterable[TargetRow] = _live_targets(
            session, kinds, category=category, platform=platform
        )
        rows = _counted(rows, on_rows)
        if widening is not None:
            rows = itertools.chain(rows, listed_targets(widening.targets))
        left_out = _live_kinds(session, category, platform, exclude=kinds)
        return TARGET_WRITERS[fmt](rows, out, generated_at=now, left_out=left_out)


def export_size(
    db: Database, fmt: str, *, category: str | None = None, platform: str | None = None
) -> int:
    """How many rows an export in ``fmt`` reads."""
    with db.reading() as session:
        if fmt == ENTRY_LEVEL:
            query = select(func.count()).select_from(Entry).where(Entry.delisted_at.is_(None))
            if category:
                query = query.where(Entry.category == category)
            if platform:
                query = query.where(Entry.platform_id == _platform_id(session, platform))
            return session.scalar(query) or 0
        counts = _live_kinds(session, category, platform, exclude=())
        kinds = _EXPORTED_KINDS.get(fmt)
        if kinds is None and fmt in {"jsonl", "csv"}:
            query = select(func.count()).select_from(Item)
            return session.scalar(query) or 0
        return sum(n for kind, n in counts.items() if kinds is None or kind in kinds)


def _live_kinds(
    session: Session, category: str | None, platform: str | None, *, exclude: Collection[str]
) -> dict[str, int]:
    """Live items by kind (bar ``exclude``): what a DNS or address export leaves out."""
    # coalesce keeps SQLite from walking the live-items index and looking every row up
    # (five times slower than reading the table through)
    live = func.coalesce(Item.delisted_at, None).is_(None)
    query = select(Item.kind, func.count()).where(live)
    if category:
        query = query.where(Item.category == category)
    if platform:
        query = query.where(Item.platform_id == _platform_id(session, platform))
    counts = session.execute(query.group_by(Item.kind)).all()
    return {kind: n for kind, n in counts if kind not in exclude}


def _counted(rows: Iterable[_R], on_rows: Callable[[int], None] | None) -> Iterator[_R]:
    if on_rows is None:
        yield from rows
        return
    n = 0
    for n, row in enumerate(rows, 1):
        if n % 10_000 == 0:
            on_rows(10_000)
        yield row
    on_rows(n % 10_000)


def _live_targets(
    session: Session,
    kinds: Collection[TargetKind],
    *,
    category: str | None,
    platform: str | None,
    batch: int = 50_000,
) -> Iterator[TargetRow]:
    """The live items of ``kinds`` as the rows the DNS and address writers read (id, kind,
    target, host): no objects to build, no dates to convert, for millions of rows."""
    query = (
        select(Item.id, Item.target, Item.kind, Item.host)
        .where(Item.delisted_at.is_(None), Item.kind.in_([k.value for k in kinds]))
        .order_by(Item.id)
    )
    if category:
        query = query.where(Item.category == category)
    if platform:
        query = query.where(Item.platform_id == _platform_id(session, platform))
    kind_of = _KINDS
    for iid, target, kind, host in stream_tuples(session, query, batch):
        yield iid, kind_of[kind], target, host


def _entry_rows(
    session: Session, *, category: str | None, platform: str | None, batch: int = 20_000
) -> Iterator[str]:
    """The live entries as dump rows."""
    query = select(
        Entry.id, Entry.ips, Entry.domains, Entry.urls, Entry.decision_ref, Entry.authority,
        Entry.decision_date,
    ).where(Entry.delisted_at.is_(None)).order_by(Entry.id)  # fmt: skip
    if category:
        query = query.where(Entry.category == category)
    if platform:
        query = query.where(Entry.platform_id == _platform_id(session, platform))
    format_stored = rkn_csv.format_stored
    for _, ips, domains, urls, ref, authority, date in stream_tuples(session, query, batch):
        yield format_stored(ips, domains, urls, authority, ref, date)


def widen(
    db: Database, fmt: str, *, category: str | None = None, platform: str | None = None
) -> Widening:
    """What ``--widen-url-hosts`` would add to a ``fmt`` export (of ``category`` and
    ``platform``, as the export): the hosts of live URL entries (rpz, hosts) or the
    addresses they list as hints (nft), each with how many other live entries name it and
    the platforms' reference hosts a block of it would also hit."""
    if fmt not in ("rpz", "hosts", "nft"):
        raise InputError(
            f"only rpz, hosts and nft exports can be widened, not {fmt}", where="--format"
        )
    with db.reading() as session:
        live = select(Entry.id).where(Entry.delisted_at.is_(None))
        url_entries = live.where(Entry.block_type == BlockType.URL.value)
        if category:
            url_entries = url_entries.where(Entry.category == category)
        if platform:
            url_entries = url_entries.where(Entry.platform_id == _platform_id(session, platform))
        sharing: dict[str, set[int]] = defaultdict(set)
        widened: dict[str, tuple[int, Target]] = {}
        if fmt == "nft":
            wanted = set(session.scalars(url_entries))
            for entry_id, ips in session.execute(
                select(Entry.id, Entry.ips).where(Entry.id.in_(live), Entry.ips != "")
            ):
                for text in ips.split("\n"):
                    target = parse_target(text)  # one address, however it was written
                    sharing[target.value].add(entry_id)
                    if entry_id in wanted:
                        widened.setdefault(target.value, (entry_id, target))
        else:
            wanted_items = select(Item.id, Item.host).where(
                Item.entry_id.in_(url_entries),
                Item.kind == TargetKind.URL.value,
                Item.host.is_not(None),
                Item.delisted_at.is_(None),
            )
            for item_id, host in session.execute(wanted_items):
                if not is_ip(host):
                    widened.setdefault(host, (item_id, Target(TargetKind.DOMAIN, host, host)))
            for entry_id, host in session.execute(
                select(Item.entry_id, Item.host).where(
                    Item.host.is_not(None), Item.delisted_at.is_(None)
                )
            ):
                if host in widened:
                    sharing[host].add(entry_id)
        # the platforms' hosts, matched as the enforcement points match them
        reference = Matcher.compile(
            (pattern, f"{pattern} ({slug})")
            for pattern, slug in session.execute(
                select(PlatformHost.pattern, Platform.slug)
                .join(Platform, Platform.id == PlatformHost.platform_id)
                .order_by(PlatformHost.pattern)
            )
        )
    targets, report = [], []
    limits = breadth.limits_for()
    for name, (owner, target) in sorted(widened.items()):
        problem = breadth.target_problem(target, limits)
        if problem is not None:  # a widening never blocks a public suffix or a /8
            report.append(f"{name}: not widened: {problem}")
            continue
        others = max(len(sharing.get(name, ())) - 1, 0)
        refs = reference.match_host(name)
        report.append(
            f"{name}: {others} other entr{'y' if others == 1 else 'ies'}"
            + (f", reference hosts {', '.join(refs)}" if refs else "")
        )
        record = ItemRecord(target, "other", "widened URL host", Decision("widened"))
        targets.append(RegisterEntry(owner, record))
    return Widening(targets, report)


def _platform_id(session: Session, slug: str) -> int:
    pid = session.scalar(select(Platform.id).where(Platform.slug == slug))
    if pid is None:
        raise NotFound(f"unknown platform {slug!r}", where="--platform")
    return pid


def record_widening(
    db: Database, fmt: str, widening: Widening, reason: str, *, now: datetime, actor: str
) -> None:
    """Audit a widened export: who, why, and what it added."""
    if not reason.strip():
        raise InputError("widening an export needs a reason", where="--widen-url-hosts")
    with db.session() as session:
        audit.record(
            session,
            at=now,
            actor=actor,
            type="registry.export.widened",
            payload={
                "format": fmt,
                "reason": reason,
                "added": len(widening.targets),
                "report": widening.report[:1000],
            },
        )


def get_item(db: Database, item_id: int) -> tuple[RegisterEntry, Item]:
    with db.reading() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise NotFound(f"no item {item_id}")
        slug = session.scalar(select(Platform.slug).where(Platform.id == item.platform_id))
        return to_entry(item, slug), item
