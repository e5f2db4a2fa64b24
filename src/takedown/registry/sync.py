"""Reading a register file into the store: ``import`` (add what is new) and ``sync``.

A sync takes the file as the whole current register of its source: entries new in it are
added, entries gone from it are delisted (at the file's update time), entries whose
content changed are updated (the old content kept as a revision) and unchanged ones are
not touched, so running it twice changes nothing the second time. It refuses a snapshot
older than the last one read from the source, and one that would delist more than
``max_delist`` percent of the source's live entries (a truncated download must not wipe
the register). Everything happens in one transaction: a refusal, a bad row or a kill
leaves the previous state. ``plan`` works it all out and changes nothing.

Memory stays flat in the file's size bar one small integer pair per live entry: entries
are written in batches as they are read, with ids assigned here so that their items can
point at them without a round trip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.errors import InputError, NotFound
from takedown.ledger import projection
from takedown.model import EntryRecord
from takedown.perf import no_cycle_collection
from takedown.registry import breadth
from takedown.registry.entries import entry_digest, entry_key
from takedown.registry.formats import (
    FINGERPRINTING,
    OPENERS,
    READERS,
    FileFacts,
    Known,
    ReadDefaults,
    RowError,
)
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import (
    Entry,
    EntryRevision,
    Item,
    Platform,
    RegisterSource,
    target_key,
)

BATCH = 5000
MAX_ERRORS_SHOWN = 20
MAX_EXAMPLES = 5
DEFAULT_MAX_DELIST = 10.0  # percent of a source's live entries one sync may delist
# what the entries and items columns hold
MAX_DECISION, MAX_AUTHORITY, MAX_SOURCE_ID = 200, 500, 64
SQLITE_CACHE_KIB = 256 * 1024  # page cache of a bulk write on SQLite
DEFAULT_SOURCE = "default"  # the register an import without --source fills
MANUAL_SOURCE = "manual"  # entries added one by one (registry add)

_ITEM_COLUMNS = (
    "entry_id",
    "target",
    "target_key",
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
_ENTRY_COLUMNS = (
    "id",
    "register_id",
    "key",
    "digest",
    "targets",
    "external_id",
    "block_type",
    "ips",
    "domains",
    "urls",
    "decision_ref",
    "authority",
    "decision_date",
    "category",
    "basis",
    "platform_id",
    "listed_at",
    "source",
    "attrs",
)


@dataclass
class SyncResult:
    """What an import or a sync read, did (or, planned, would do), and why it stopped."""

    path: str
    format: str
    source: str
    mode: str  # "import" or "sync"
    plan: bool = False
    entries: int = 0  # valid entries read
    targets: int = 0  # their targets
    added: int = 0  # entries added
    items_added: int = 0
    changed: int = 0
    delisted: int = 0
    unchanged: int = 0  # already present as they are
    duplicates: int = 0  # repeated in the file
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # first few, as FILE:LINE: message
    report: str | None = None  # file holding every rejected row
    refused: str | None = None  # why a sync refused the file (nothing changed)
    committed: bool = False
    sha256: str = ""
    updated_at: datetime | None = None  # the register's own update time
    signature: str | None = None  # how the file's signature was checked (None: not)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """The result as plain data (``--json``)."""
        return {
            "file": self.path,
            "format": self.format,
            "source": self.source,
            "mode": self.mode,
            "plan": self.plan,
            "entries": self.entries,
            "targets": self.targets,
            "added": self.added,
            "items_added": self.items_added,
            "changed": self.changed,
            "delisted": self.delisted,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "report": self.report,
            "refused": self.refused,
            "committed": self.committed,
            "sha256": self.sha256,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "signature": self.signature,
            "examples": self.examples,
        }

    def example(self, kind: str, text: str) -> None:
        shown = self.examples.setdefault(kind, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(text)


class _CountingReader(io.RawIOBase):
    """Wraps a binary file, hashing what is read and reporting how much (progress bar)."""

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


@contextlib.contextmanager
def _open_plain(path: Path, *, signer_cert: Path | None, facts: FileFacts) -> Iterator[BinaryIO]:
    if signer_cert is not None:
        raise InputError("this format has no signature to check", where="--signer-cert")
    with path.open("rb") as raw:
        yield raw


class PlatformIds:
    """Platform slug → id, looked up once per slug."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._ids: dict[str, int] = {}

    def get(self, slug: str, where: str | None = None) -> int:
        if slug not in self._ids:
            pid = self._session.scalar(select(Platform.id).where(Platform.slug == slug))
            if pid is None:
                raise NotFound(f"unknown platform {slug!r}", where=where)
            self._ids[slug] = pid
        return self._ids[slug]


def _cells(values: tuple[str, ...]) -> str:
    return "\n".join(values)


class EntryWriter:
    """Batched inserts of new entries and their items, through the driver.

    Entry ids are assigned here (the table is locked for the transaction on PostgreSQL),
    so an item row knows its entry's id before either is written. Items go in with
    ``ON CONFLICT DO NOTHING``: a target another live entry already lists under the same
    decision stays that entry's item.
    """

    def __init__(self, session: Session, register_id: int, now: datetime) -> None:
        self.conn = session.connection()
        dialect = self.conn.dialect
        self.postgres = dialect.name == "postgresql"
        if self.postgres:
            self.conn.exec_driver_sql("LOCK TABLE entries IN SHARE ROW EXCLUSIVE MODE")
        else:  # a national register's indexes do not fit SQLite's default 2 MiB page cache
            self.conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        mark = "?" if dialect.name == "sqlite" else "%s"

        def insert(table: str, columns: tuple[str, ...], tail: str = "") -> str:
            marks = ", ".join([mark] * len(columns))
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){tail}"

        self.entry_sql = insert("entries", _ENTRY_COLUMNS)
        self.item_sql = insert(
            "items",
            _ITEM_COLUMNS,
            " ON CONFLICT (target_key, decision_ref) WHERE delisted_at IS NULL DO NOTHING",
        )
        processor = Item.__table__.c.listed_at.type.dialect_impl(dialect).bind_processor(dialect)
        self.bind: Callable[[datetime], object] = processor or (lambda value: value)
        self.now = self.bind(now)
        self.register_id = register_id
        self.next_id = (session.scalar(select(func.max(Entry.id))) or 0) + 1
        self.entries: list[tuple] = []
        self.items: list[tuple] = []
        self.items_added = 0
        self.new_state = projection.NEW_ITEM_STATE.value

    def add(self, entry: EntryRecord, key: str, digest: str, platform_id: int | None) -> int:
        """Queue a new entry and its items; return the entry's id."""
        entry_id = self.next_id
        self.next_id += 1
        d = entry.decision
        listed = self.now if entry.listed_at is None else self.bind(entry.listed_at)
        cells = entry.cells
        self.entries.append(
            (
                entry_id,
                self.register_id,
                key,
                f"{digest:016x}",
                len(entry.targets),
                entry.source_id,
                entry.block_type._value_,
                _cells(cells.ips),
                _cells(cells.domains),
                _cells(cells.urls),
                d.reference,
                d.authority,
                d.date,
                entry.category,
                entry.basis,
                platform_id,
                listed,
                entry.source,
                json.dumps(dict(entry.attrs), ensure_ascii=False) if entry.attrs else "",
            )
        )
        self.add_items(entry, entry_id, platform_id, listed)
        if len(self.entries) >= BATCH or len(self.items) >= BATCH:
            self.flush()
        return entry_id

    def add_items(
        self, entry: EntryRecord, entry_id: int, platform_id: int | None, listed: object
    ) -> None:
        d = entry.decision
        for target, flags in entry.targets:
            self.items.append(
                (
                    entry_id,
                    target.value,
                    target_key(target.value),
                    target.kind._value_,  # the plain str (the enum's .value is a property)
                    target.host,
                    platform_id,
                    entry.category,
                    entry.basis,
                    d.reference,
                    d.authority,
                    d.date,
                    listed,
                    entry.source,
                    ",".join(flags) if flags else "",
                    self.new_state,
                    self.now,
                )
            )

    def flush(self) -> None:
        if self.entries:
            self.conn.exec_driver_sql(self.entry_sql, self.entries)
            self.entries.clear()
        if self.items:
            cursor = self.conn.exec_driver_sql(self.item_sql, self.items)
            self.items_added += cursor.rowcount if cursor.rowcount >= 0 else len(self.items)
            self.items.clear()

    def finish(self) -> None:
        self.flush()
        if self.postgres:
            self.conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('entries', 'id'), "
                "(SELECT COALESCE(MAX(id), 1) FROM entries))"
            )


# A live entry in memory: its key (64 bits) → id, target count and digest in one int.
_MASK64 = (1 << 64) - 1


_MET = 0  # an entry met in this file (ids start at 1, so no packed entry is 0)


def _pack(entry_id: int, targets: int, digest: int) -> int:
    return (entry_id << 80) | (min(targets, 0xFFFF) << 64) | digest


def _live_entries(session: Session, register_id: int) -> dict[int, int]:
    """Live entries of a source: 64-bit key → ``_pack``, compactly (millions of them)."""
    conn = session.connection()
    # most of the table: read it in order (SQLite would otherwise look up every row
    # through the key index)
    scan = "NOT INDEXED " if conn.dialect.name == "sqlite" else ""
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    rows = conn.exec_driver_sql(
        f"SELECT key, id, targets, digest FROM entries {scan}"
        f"WHERE register_id = {mark} AND delisted_at IS NULL",
        (register_id,),
    )
    return {int(key, 16): _pack(eid, n, int(digest, 16)) for key, eid, n, digest in rows}


def register_row(session: Session, name: str, fmt: str) -> RegisterSource:
    source = session.scalar(select(RegisterSource).where(RegisterSource.name == name))
    if source is None:
        source = RegisterSource(name=name, format=fmt)
        session.add(source)
        session.flush()
    return source


def _entry_content(row: Entry) -> str:
    """An entry's stored columns as JSON (the revision kept when a sync changes it)."""
    data = {c.name: getattr(row, c.name) for c in Entry.__table__.columns}
    return json.dumps(data, default=str, ensure_ascii=False, sort_keys=True)


class EntryChecks:
    """What the register asks of an entry before it is stored: a known category, a basis,
    a decision, columns that fit, and targets no broader than the profile allows
    (``registry.breadth``) -- unless a person admits the broad ones with a reason, each
    then kept in ``admitted`` for the audit log."""

    def __init__(self, accept_broad: str | None = None) -> None:
        self.cfg = config_mod.default()
        self.limits = breadth.limits_for()
        self.accept_broad = accept_broad
        self.categories: set[str] = set()
        self.admitted: list[dict[str, str | None]] = []

    def check(self, entry: EntryRecord) -> None:
        """Raise InputError (naming the entry's file:line) if ``entry`` may not be stored."""
        where = entry.source
        if entry.category not in self.categories:
            self.cfg.check_category(entry.category, where=where)
            self.categories.add(entry.category)
        if not entry.basis.strip():
            raise InputError("an entry needs a legal basis", where=where)
        if not entry.decision.reference.strip():
            raise InputError("an entry needs a decision reference", where=where)
        for name, value, limit in (
            ("decision reference", entry.decision.reference, MAX_DECISION),
            ("authority", entry.decision.authority, MAX_AUTHORITY),
            ("register id", entry.source_id, MAX_SOURCE_ID),
        ):
            if value and len(value) > limit:
                raise InputError(
                    f"{name} longer than {limit} characters ({len(value)})", where=where
                )
        for target, _ in entry.targets:
            problem = breadth.target_problem(target, self.limits)
            if problem is None:
                continue
            if self.accept_broad is None:
                raise InputError(f"{problem} (--accept-broad REASON admits it)", where=where)
            self.admitted.append({"target": target.value, "problem": problem, "where": where})

    def audit(self, session: Session, *, now: datetime, actor: str) -> None:
        """One audit event per broad target admitted, with the reason given."""
        events = [
            ("registry.broad_admitted", {**a, "reason": self.accept_broad}) for a in self.admitted
        ]
        audit.record_many(session, at=now, actor=actor, events=events)


def read_register(
    db: Database,
    path: str | Path,
    fmt: str,
    *,
    source: str,
    mode: str,
    now: datetime,
    actor: str,
    plan: bool = False,
    allow_older: bool = False,
    max_delist: float = DEFAULT_MAX_DELIST,
    defaults: ReadDefaults | None = None,
    skip_invalid: bool = False,
    report_path: str | Path | None = None,
    signer_cert: Path | None = None,
    accept_broad: str | None = None,
    on_read: Callable[[int], None] | None = None,
) -> SyncResult:
    """Import (``mode="import"``: add new entries) or sync (``"sync"``) a register file.

    ``accept_broad`` (a reason) admits targets broader than the profile allows, each
    with an audit record; without it such an entry is a bad row.
    """
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(sorted(READERS))}")
    if mode not in ("import", "sync"):
        raise ValueError(f"mode {mode!r}")
    path = Path(path)
    defaults = defaults or ReadDefaults()
    result = SyncResult(path=str(path), format=fmt, source=source, mode=mode, plan=plan)
    facts = FileFacts()
    opener = OPENERS.get(fmt, _open_plain)
    try:
        opened = opener(path, signer_cert=signer_cert, facts=facts)
        raw = opened.__enter__()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    try:
        with no_cycle_collection(), db.session() as session:
            counting = _CountingReader(raw, on_read)
            stream = io.BufferedReader(counting, buffer_size=1 << 20)

            def read(known: Container[int] | None) -> Iterator[EntryRecord | RowError | Known]:
                extra = {} if known is None else {"known": known}
                return READERS[fmt](
                    stream, source=str(path), defaults=defaults, facts=facts, **extra
                )

            _apply(
                session,
                read,
                result,
                facts,
                now=now,
                actor=actor,
                defaults=defaults,
                skip_invalid=skip_invalid,
                report_path=report_path,
                allow_older=allow_older,
                max_delist=max_delist,
                counting=counting,
                checks=EntryChecks(accept_broad),
            )
            if not result.committed:
                session.rollback()
    finally:
        opened.__exit__(None, None, None)
    return result


def _describe(entry: EntryRecord) -> str:
    first = entry.targets[0][0].value if entry.targets else "?"
    more = f" (+{len(entry.targets) - 1})" if len(entry.targets) > 1 else ""
    return f"{entry.source}: {entry.block_type} {first}{more} ({entry.decision.reference})"


def _apply(
    session: Session,
    read: Callable[[Container[int] | None], Iterator[EntryRecord | RowError | Known]],
    result: SyncResult,
    facts: FileFacts,
    *,
    now: datetime,
    actor: str,
    defaults: ReadDefaults,
    skip_invalid: bool,
    report_path: str | Path | None,
    allow_older: bool,
    max_delist: float,
    counting: _CountingReader,
    checks: EntryChecks,
) -> None:
    register = register_row(session, result.source, result.format)
    # live entries by key; a key met in the file is set to _MET, so what is left is gone
    live = _live_entries(session, register.id)
    live_before = len(live)
    by_digest = None
    if result.format in FINGERPRINTING:  # rows seen last time need no parsing
        by_digest = {packed & _MASK64: k for k, packed in live.items()}
    entries = read(by_digest)
    writer = EntryWriter(session, register.id, now)
    platforms = PlatformIds(session)
    default_pid = platforms.get(defaults.platform, "--platform") if defaults.platform else None
    changed: list[tuple[int, EntryRecord, int, int | None]] = []
    rejected_lines: list[str] = []
    would_add_items = 0
    for entry in entries:
        if type(entry) is Known:  # a row as it was last time: not even parsed
            k = by_digest[entry.fingerprint]  # type: ignore[index]
            result.entries += 1
            packed = live[k]
            if not packed:
                result.duplicates += 1
                continue
            live[k] = _MET
            result.targets += (packed >> 64) & 0xFFFF
            result.unchanged += 1
            continue
        if isinstance(entry, RowError):
            message, raw = f"{result.path}:{entry.line}: {entry.message}", entry.raw
        else:
            try:
                checks.check(entry)
                pid = default_pid
                if entry.platform and entry.platform != defaults.platform:
                    pid = platforms.get(entry.platform, entry.source)
            except (InputError, NotFound) as exc:
                message, raw = str(exc), _describe(entry)
            else:
                result.entries += 1
                result.targets += len(entry.targets)
                key = entry_key(entry)
                k = int(key, 16)
                found = live.get(k)
                if found == _MET:
                    result.duplicates += 1
                    continue
                live[k] = _MET
                digest = entry.fingerprint
                if digest is None:
                    digest = entry_digest(entry)
                if found is None:
                    result.added += 1
                    result.example("added", _describe(entry))
                    if result.plan:
                        would_add_items += len(entry.targets)
                    elif not result.rejected or skip_invalid:
                        writer.add(entry, key, digest, pid)
                elif found & _MASK64 == digest or result.mode == "import":
                    result.unchanged += 1  # an import adds what is new and touches nothing
                else:
                    result.changed += 1
                    result.example("changed", _describe(entry))
                    changed.append((found >> 80, entry, digest, pid))
                continue
        result.rejected += 1
        if len(result.errors) < MAX_ERRORS_SHOWN:
            result.errors.append(message)
        if skip_invalid:
            rejected_lines.append(f"{message}\t{raw}")
    result.sha256 = counting.digest.hexdigest()
    result.updated_at = facts.updated_at
    result.signature = facts.signature
    if result.rejected and not skip_invalid:
        return
    at = facts.updated_at or now
    gone: list[int] = []
    if result.mode == "sync":
        gone = [packed >> 80 for packed in live.values() if packed != _MET]
        result.refused = _refusal(register, facts, live_before, len(gone), allow_older, max_delist)
        if result.refused:
            return
        result.delisted = len(gone)
        for entry_id in gone[:MAX_EXAMPLES]:
            result.example("delisted", f"entry {entry_id}")
    if result.plan:
        result.items_added = would_add_items
        return
    writer.finish()
    if changed:
        _update_entries(session, writer, changed, at)
        writer.finish()
    result.items_added = writer.items_added
    if result.mode == "sync" and gone:
        decision = f"sync of {result.source}: not in the register of {at.isoformat()}"
        _delist_entries(session, gone, at, decision)
    if rejected_lines:
        result.report = _write_report(rejected_lines, report_path or f"{result.path}.rejected.txt")
    register.format = result.format
    register.synced_at = now
    register.sha256 = result.sha256
    if facts.updated_at and (register.updated_at is None or facts.updated_at > register.updated_at):
        register.updated_at = facts.updated_at
        register.updated_stamp = facts.updated_at.isoformat()  # the register's own offset
    _audit(session, result, now=now, actor=actor)
    checks.audit(session, now=now, actor=actor)
    result.committed = True


def _refusal(
    register: RegisterSource,
    facts: FileFacts,
    live_before: int,
    gone: int,
    allow_older: bool,
    max_delist: float,
) -> str | None:
    last = register.updated_at
    if facts.updated_at and last and facts.updated_at < last and not allow_older:
        return (
            f"this snapshot ({facts.updated_at.isoformat()}) is older than the last one "
            f"read from {register.name} ({last.isoformat()}); --allow-older to sync it anyway"
        )
    if live_before and gone * 100 > max_delist * live_before:
        share = 100 * gone / live_before
        return (
            f"it would delist {gone} of {live_before} live entries ({share:.1f}%, more than "
            f"{max_delist:g}%): a truncated file? --max-delist {share:.0f} allows it"
        )
    return None


def _update_entries(
    session: Session,
    writer: EntryWriter,
    changed: list[tuple[int, EntryRecord, int, int | None]],
    at: datetime,
) -> None:
    """Store the new content of changed entries, keep the old as a revision, and bring
    their items in line: targets gone are delisted, targets new are added."""
    for start in range(0, len(changed), 500):
        chunk = changed[start : start + 500]
        ids = [entry_id for entry_id, *_ in chunk]
        rows = {e.id: e for e in session.scalars(select(Entry).where(Entry.id.in_(ids)))}
        items: dict[int, dict[tuple[str, str], int]] = {}
        for iid, eid, target, ref in session.execute(
            select(Item.id, Item.entry_id, Item.target, Item.decision_ref).where(
                Item.entry_id.in_(ids), Item.delisted_at.is_(None)
            )
        ):
            items.setdefault(eid, {})[(target, ref)] = iid
        gone: list[int] = []
        for entry_id, entry, digest, pid in chunk:
            row = rows[entry_id]
            session.add(
                EntryRevision(entry_id=entry_id, replaced_at=at, content=_entry_content(row))
            )
            d, cells = entry.decision, entry.cells
            row.digest = f"{digest:016x}"
            row.targets = len(entry.targets)
            row.ips, row.domains, row.urls = (
                _cells(cells.ips),
                _cells(cells.domains),
                _cells(cells.urls),
            )
            row.decision_ref, row.authority, row.decision_date = d.reference, d.authority, d.date
            row.category, row.basis, row.platform_id = entry.category, entry.basis, pid
            row.source = entry.source
            row.attrs = json.dumps(dict(entry.attrs), ensure_ascii=False) if entry.attrs else ""
            row.changed_at = at
            old = items.get(entry_id, {})
            new = [(t, f) for t, f in entry.targets if (t.value, d.reference) not in old]
            keep = {(t.value, d.reference) for t, _ in entry.targets}
            gone += [iid for pair, iid in old.items() if pair not in keep]
            if new:
                writer.add_items(_with_targets(entry, tuple(new)), entry_id, pid, writer.bind(at))
        session.flush()
        if gone:
            _delist_items(session, gone, at, "its register entry no longer lists it")


def _with_targets(entry: EntryRecord, targets: tuple) -> EntryRecord:
    return dataclasses.replace(entry, targets=targets)


def _delist_entries(session: Session, entry_ids: list[int], at: datetime, decision: str) -> None:
    for start in range(0, len(entry_ids), BATCH):
        chunk = entry_ids[start : start + BATCH]
        session.execute(
            update(Entry)
            .where(Entry.id.in_(chunk))
            .values(delisted_at=at)
            .execution_options(synchronize_session=False)
        )
        item_ids = list(
            session.scalars(
                select(Item.id).where(Item.entry_id.in_(chunk), Item.delisted_at.is_(None))
            )
        )
        _delist_items(session, item_ids, at, decision)


def _delist_items(session: Session, item_ids: list[int], at: datetime, decision: str) -> None:
    for start in range(0, len(item_ids), BATCH):
        chunk = item_ids[start : start + BATCH]
        session.execute(
            update(Item)
            .where(Item.id.in_(chunk))
            .values(delisted_at=at, delist_decision=decision)
            .execution_options(synchronize_session=False)
        )
        projection.apply_delist_many(session, chunk, at)


def _write_report(lines: list[str], report_path: str | Path) -> str:
    """Every rejected row (FILE:LINE: reason, a tab, the raw row), for fixing and re-import."""
    report = Path(report_path)
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(report)


def _audit(session: Session, result: SyncResult, *, now: datetime, actor: str) -> None:
    payload = {
        k: v
        for k, v in result.summary().items()
        if k not in ("errors", "examples", "committed", "plan", "report", "refused")
    }
    audit.record(session, at=now, actor=actor, type=f"registry.{result.mode}", payload=payload)
