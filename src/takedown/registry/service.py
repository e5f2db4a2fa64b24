"""Register operations over the database; formats live in ``registry.formats``."""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.errors import Conflict, InputError, NotFound
from takedown.ledger import projection
from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry, Target, TargetKind
from takedown.perf import no_cycle_collection
from takedown.registry.formats import READERS, WRITERS, ReadDefaults, RowError
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item, Platform

BATCH = 5000
MAX_ERRORS_SHOWN = 20

_COLUMNS = (
    "target",
    "kind",
    "host",
    "platform_id",
    "category",
    "basis",
    "decision_ref",
    "authority",
    "decision_date",
    "listed_at",
    "source",
    "flags",
    "state",
    "state_at",
)


@dataclass
class ImportResult:
    path: str
    format: str
    rows: int = 0  # targets read (a file row may carry several)
    inserted: int = 0
    duplicates: int = 0  # already present, or repeated in the file
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # first few, as FILE:LINE: message
    report: str | None = None  # file holding every rejected row
    committed: bool = False
    sha256: str = ""


class _PlatformIds:
    """Platform slug → id, looked up once per slug."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._ids: dict[str, int] = {}

    def get(self, slug: str, *, where: str | None = None) -> int:
        if slug not in self._ids:
            pid = self._session.scalar(select(Platform.id).where(Platform.slug == slug))
            if pid is None:
                raise NotFound(f"unknown platform {slug!r}", where=where)
            self._ids[slug] = pid
        return self._ids[slug]


_NEW_STATE = projection.NEW_ITEM_STATE.value


def _same(value: datetime) -> object:
    return value


def _row(
    record: ItemRecord,
    platform_id: int | None,
    now: object,
    bind: Callable[[datetime], object] = _same,
) -> tuple:
    """The ``_COLUMNS`` values of a new item; ``now`` and ``bind`` give the time columns in
    the form the caller stores (datetimes for the ORM, driver values for the bulk insert)."""
    target, d, flags = record.target, record.decision, record.flags
    return (
        target.value,
        target.kind._value_,  # the plain str (the enum's .value is a slow property)
        target.host,
        platform_id,
        record.category,
        record.basis,
        d.reference,
        d.authority,
        d.date,
        now if record.listed_at is None else bind(record.listed_at),
        record.source,
        ",".join(flags) if flags else "",
        _NEW_STATE,
        now,
    )


def _check_record(record: ItemRecord, cfg: config_mod.Config, where: str | None) -> None:
    cfg.check_category(record.category, where=where)
    if not record.basis.strip():
        raise InputError("an item needs a legal basis", where=where)
    if not record.decision.reference.strip():
        raise InputError("an item needs a decision reference", where=where)


class _Inserter:
    """Batched INSERT … ON CONFLICT DO NOTHING through the driver, counting duplicates.

    Rows go to the driver as they are, so the datetime columns are bound here, the way
    SQLAlchemy would bind them (the import's ``now`` once, not once per row).
    """

    def __init__(self, session: Session, now: datetime) -> None:
        self.conn = session.connection()
        dialect = self.conn.dialect
        mark = "?" if dialect.name == "sqlite" else "%s"
        cols = ", ".join(_COLUMNS)
        marks = ", ".join([mark] * len(_COLUMNS))
        self.sql = (
            f"INSERT INTO items ({cols}) VALUES ({marks}) "
            "ON CONFLICT (target, decision_ref) DO NOTHING"
        )
        self.pending: dict[tuple[str, str], tuple] = {}
        self.inserted = 0
        self.duplicates = 0
        # the dialect's implementation: UTCDateTime's conversion, then the driver format
        # (on SQLite the text SQLAlchemy stores, microseconds always written)
        processor = Item.__table__.c.listed_at.type.dialect_impl(dialect).bind_processor(dialect)
        self.bind: Callable[[datetime], object] = processor or (lambda value: value)
        self.now = self.bind(now)

    def add(self, record: ItemRecord, platform_id: int | None) -> None:
        key = (record.target.value, record.decision.reference)
        if key in self.pending:
            self.duplicates += 1
            return
        self.pending[key] = _row(record, platform_id, self.now, self.bind)
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = list(self.pending.values())
        self.pending.clear()
        cursor = self.conn.exec_driver_sql(self.sql, rows)
        written = cursor.rowcount if cursor.rowcount >= 0 else len(rows)
        self.inserted += written
        self.duplicates += len(rows) - written


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports the bytes read (for a progress bar)."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._on_read = on_read
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        if self._on_read and n:
            self._on_read(n)
        return n


def import_file(
    db: Database,
    path: str | Path,
    fmt: str,
    *,
    now: datetime,
    actor: str,
    platform: str | None = None,
    skip_invalid: bool = False,
    defaults: ReadDefaults | None = None,
    report_path: str | Path | None = None,
    on_read: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a register file in one transaction.

    Without ``skip_invalid`` any bad row aborts the import and nothing changes; with it,
    valid rows go in and rejected rows are written to ``report_path``.
    """
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(sorted(READERS))}")
    path = Path(path)
    cfg = config_mod.default()
    defaults = defaults or ReadDefaults(platform=platform)
    result = ImportResult(path=str(path), format=fmt)
    rejected_lines: list[str] = []
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    with raw, no_cycle_collection(), db.session() as session:
        counting = _CountingReader(raw, on_read)
        stream = io.BufferedReader(counting, buffer_size=1 << 20)
        platforms = _PlatformIds(session)
        default_pid = platforms.get(platform, where="--platform") if platform else None
        inserter = _Inserter(session, now)
        known_categories: set[str] = set()
        rows = 0
        for entry in READERS[fmt](stream, source=str(path), defaults=defaults):
            if isinstance(entry, RowError):
                message = f"{path}:{entry.line}: {entry.message}"
            else:
                rows += 1
                try:
                    # _check_record, with the category checked once per distinct value
                    if entry.category not in known_categories:
                        cfg.check_category(entry.category, where=entry.source)
                        known_categories.add(entry.category)
                    if not entry.basis.strip():
                        raise InputError("an item needs a legal basis", where=entry.source)
                    if not entry.decision.reference.strip():
                        raise InputError("an item needs a decision reference", where=entry.source)
                    pid = default_pid
                    if entry.platform and entry.platform != platform:
                        pid = platforms.get(entry.platform, where=entry.source)
                    inserter.add(entry, pid)
                    continue
                except (InputError, NotFound) as exc:
                    message = str(exc)
            result.rejected += 1
            if len(result.errors) < MAX_ERRORS_SHOWN:
                result.errors.append(message)
            if skip_invalid:
                rejected_lines.append(message)
        result.rows = rows
        if result.rejected and not skip_invalid:
            session.rollback()
            return result
        inserter.flush()
        result.inserted = inserter.inserted
        result.duplicates = inserter.duplicates
        result.sha256 = counting.digest.hexdigest()
        if rejected_lines:
            result.report = _write_report(rejected_lines, report_path or f"{path}.rejected.txt")
        _audit_import(session, result, platform, now=now, actor=actor)
        result.committed = True
    return result


def _audit_import(
    session: Session, result: ImportResult, platform: str | None, *, now: datetime, actor: str
) -> None:
    audit.record(
        session,
        at=now,
        actor=actor,
        type="registry.import",
        payload={
            "file": result.path,
            "sha256": result.sha256,
            "format": result.format,
            "platform": platform,
            "rows": result.rows,
            "inserted": result.inserted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
        },
    )


def _write_report(lines: list[str], report_path: str | Path) -> str:
    """Every rejected row, one per line, for the analyst to fix and re-import."""
    report = Path(report_path)
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(report)


def add_item(db: Database, record: ItemRecord, *, now: datetime, actor: str) -> tuple[int, bool]:
    """Add one item; return (id, created). The same target under the same decision is one item."""
    _check_record(record, config_mod.default(), None)
    with db.session() as session:
        pid = (
            _PlatformIds(session).get(record.platform, where="--platform")
            if record.platform
            else None
        )
        existing = session.scalar(
            select(Item.id).where(
                Item.target == record.target.value, Item.decision_ref == record.decision.reference
            )
        )
        if existing is not None:
            return existing, False
        item = Item(**dict(zip(_COLUMNS, _row(record, pid, now), strict=True)))
        session.add(item)
        session.flush()
        audit.record(
            session,
            at=now,
            actor=actor,
            type="registry.add",
            payload={
                "item": item.id,
                "target": item.target,
                "category": item.category,
                "decision": item.decision_ref,
                "platform": record.platform,
            },
        )
        return item.id, True


def delist(db: Database, item_id: int, decision: str, *, now: datetime, actor: str) -> None:
    """Delist an item by a new decision; it leaves the figures from ``now``."""
    if not decision.strip():
        raise InputError("delisting needs a decision reference", where="--decision")
    with db.session() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise NotFound(f"no item {item_id}")
        if item.delisted_at is not None:
            raise Conflict(f"item {item_id} was already delisted on {item.delisted_at:%Y-%m-%d}")
        session.execute(
            update(Item).where(Item.id == item_id).values(delisted_at=now, delist_decision=decision)
        )
        projection.apply_delist(session, item_id, now)
        audit.record(
            session,
            at=now,
            actor=actor,
            type="registry.delist",
            payload={"item": item_id, "decision": decision},
        )


def to_entry(item: Item, platform_slug: str | None) -> RegisterEntry:
    record = ItemRecord(
        target=Target(kind=TargetKind(item.kind), value=item.target, host=item.host),
        category=item.category,
        basis=item.basis,
        decision=Decision(
            reference=item.decision_ref, authority=item.authority, date=item.decision_date
        ),
        platform=platform_slug,
        listed_at=item.listed_at,
        source=item.source,
        flags=tuple(f for f in item.flags.split(",") if f),
    )
    return RegisterEntry(
        id=item.id, record=record, state=ItemState(item.state), delisted_at=item.delisted_at
    )


def iter_entries(
    session: Session,
    *,
    category: str | None = None,
    platform: str | None = None,
    include_delisted: bool = True,
    batch: int = 10_000,
) -> Iterator[RegisterEntry]:
    """Stream register entries in id order, a batch at a time."""
    slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
    query = select(Item).order_by(Item.id)
    if category:
        query = query.where(Item.category == category)
    if platform:
        pid = next((k for k, v in slugs.items() if v == platform), None)
        if pid is None:
            raise NotFound(f"unknown platform {platform!r}", where="--platform")
        query = query.where(Item.platform_id == pid)
    if not include_delisted:
        query = query.where(Item.delisted_at.is_(None))
    last = 0
    while True:
        rows = session.scalars(query.where(Item.id > last).limit(batch)).all()
        if not rows:
            return
        for item in rows:
            yield to_entry(item, slugs.get(item.platform_id))
        last = rows[-1].id
        session.expunge_all()


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


def export(
    db: Database,
    fmt: str,
    out: BinaryIO,
    *,
    now: datetime,
    category: str | None = None,
    platform: str | None = None,
) -> int:
    """Write the current (not delisted) register in ``fmt``; return the count written."""
    if fmt not in WRITERS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(sorted(WRITERS))}")
    with db.reading() as session:
        entries = iter_entries(
            session, category=category, platform=platform, include_delisted=fmt in {"jsonl", "csv"}
        )
        return WRITERS[fmt](entries, out, generated_at=now)


def get_item(db: Database, item_id: int) -> tuple[RegisterEntry, Item]:
    with db.reading() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise NotFound(f"no item {item_id}")
        slug = session.scalar(select(Platform.slug).where(Platform.id == item.platform_id))
        return to_entry(item, slug), item
