"""Writing register entries and their items: the bulk writer, the live entries of a source
in compact form, and delisting.

The writer goes through the driver in batches (a national register is millions of rows)
and assigns entry ids itself, so that an item row knows its entry's id before either is
written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import pairwise
from operator import itemgetter
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.schema import AddConstraint, DropConstraint

from takedown.errors import NotFound
from takedown.ledger import projection
from takedown.model import EntryRecord
from takedown.store.schema import Entry, Item, Platform, RegisterSource, target_key

BATCH = 5000
ANALYZE_AFTER = 100_000  # new entries after which a PostgreSQL writer updates statistics
SQLITE_CACHE_KIB = 256 * 1024  # page cache of a bulk write on SQLite
PG_INDEX_MEMORY = "256MB"  # maintenance_work_mem of a first load's index builds
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
    "listed_by",
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


_ENTRY_WIDTH = len(_ENTRY_COLUMNS)
# what an item row takes from its queued entry (the entry's row, then its flat targets)
_ITEM_SOURCE = itemgetter(
    *(
        _ENTRY_COLUMNS.index(name)
        for name in (
            "id",
            "platform_id",
            "listed_at",
            "source",
            "category",
            "basis",
            "decision_ref",
            "authority",
            "decision_date",
        )
    ),
    _ENTRY_WIDTH,
)


def _flat_targets(entry: EntryRecord) -> list[str | None]:
    """An entry's targets as value, kind, host, flags, value, ... (cheap to send)."""
    flat: list[str | None] = []
    for target, flags in entry.targets:
        # the plain str of the kind (the enum's .value is a property)
        flat += (target.value, target.kind._value_, target.host, ",".join(flags) if flags else "")
    return flat


class PlatformIds:
    """Platform slug → id, looked up once per slug; with ``all_known``, every platform
    read up front (a sync reads its file in a second process, which has no session)."""

    def __init__(self, session: Session, *, all_known: bool = False) -> None:
        self._session = session
        self._ids: dict[str, int] = {}
        self._complete = all_known
        if all_known:
            rows = session.execute(select(Platform.slug, Platform.id))
            self._ids = {slug: pid for slug, pid in rows}

    def get(self, slug: str, where: str | None = None) -> int:
        if slug not in self._ids:
            pid = None
            if not self._complete:
                pid = self._session.scalar(select(Platform.id).where(Platform.slug == slug))
            if pid is None:
                raise NotFound(f"unknown platform {slug!r}", where=where)
            self._ids[slug] = pid
        return self._ids[slug]


def hex64(value: int) -> str:
    """A 64-bit entry key or digest as the entries table keeps it: 16 hex digits."""
    return value.to_bytes(8).hex()  # as f"{value:016x}", in a third of the time


# Cells as the entries table keeps them: one per line (a bound method: no Python frame
# for each of a national register's millions of cells).
cells_text: Callable[[Iterable[str]], str] = "\n".join


class EntryWriter:
    """Batched inserts of new entries and their items, through the driver.

    Entry ids are assigned here (the table is locked for the transaction on PostgreSQL),
    so an item row knows its entry's id before either is written. Items go in with
    ``ON CONFLICT DO NOTHING``: a target another live entry already lists under the same
    decision stays that entry's item.
    """

    def __init__(self, session: Session, register_id: int, now: datetime, actor: str) -> None:
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
        if self.postgres:  # COPY takes text: ISO strings pass a reading process's pipe
            bind_aware = self.bind  # as marshal, which knows no datetime
            self.bind = lambda value: bind_aware(value).isoformat()  # type: ignore[union-attr]
        self.now = self.bind(now)
        self.register_id = register_id
        self.actor = actor  # each new item's listed_by
        self.next_id = (session.scalar(select(func.max(Entry.id))) or 0) + 1
        self.entries: list[tuple] = []
        self.items: list[tuple] = []
        self._queued = 0  # targets queued
        self.items_added = 0
        self._load_table = False  # PostgreSQL: items_load made in this transaction
        self._first_write = True
        self.written = 0  # entries written since the statistics were last brought up to date
        self._deferred: list[Index] = []  # indexes to build again (a first load)
        self._deferred_keys: list[ForeignKeyConstraint] = []  # foreign keys to check again
        # PostgreSQL, a first load: hashes of the (target, decision) pairs it wrote
        self._first_load: set[int] | None = None
        # where full batches go instead of the database (a reading process's pipe)
        self.sink: Callable[[list[tuple], list[tuple]], None] | None = None
        self.new_state = projection.NEW_ITEM_STATE.value

    def add(self, entry: EntryRecord, key: int, digest: int, platform_id: int | None) -> int:
        """Queue a new entry (its ``entry_key`` and ``entry_digest``) and its items;
        return the entry's id.

        What is queued is the entry's row with its targets after it; ``write`` makes the
        item rows, in the writing process (where a second process reads, that one is the
        busier: the less it does per entry, the sooner the sync ends).
        """
        entry_id = self.next_id
        self.next_id += 1
        d = entry.decision
        cells = entry.cells
        self.entries.append(
            (
                entry_id,
                self.register_id,
                hex64(key),
                hex64(digest),
                len(entry.targets),
                entry.source_id,
                entry.block_type._value_,
                cells_text(cells.ips),
                cells_text(cells.domains),
                cells_text(cells.urls),
                d.reference,
                d.authority,
                d.date,
                entry.category,
                entry.basis,
                platform_id,
                self.now if entry.listed_at is None else self.bind(entry.listed_at),
                entry.source,
                json.dumps(dict(entry.attrs), ensure_ascii=False) if entry.attrs else "",
                _flat_targets(entry),
            )
        )
        self._queued += len(entry.targets)
        if len(self.entries) >= BATCH or self._queued >= BATCH:
            self.flush()
        return entry_id

    def add_items(
        self, entry: EntryRecord, entry_id: int, platform_id: int | None, listed: object
    ) -> None:
        """Queue items of an entry already stored (the targets a changed entry gained)."""
        d = entry.decision
        self._item_rows(
            self.items,
            (
                entry_id,
                platform_id,
                listed,
                entry.source,
                entry.category,
                entry.basis,
                d.reference,
                d.authority,
                d.date,
                _flat_targets(entry),
            ),
        )
        self._queued += len(entry.targets)

    def flush(self) -> None:
        """Write (or hand to ``sink``) what is queued."""
        if not (self.entries or self.items):
            return
        if self.sink is not None:
            self.sink(self.entries, self.items)
        else:
            self.write(self.entries, self.items)
        self.entries, self.items, self._queued = [], [], 0

    def _item_rows(self, rows: list[tuple], of: tuple) -> None:
        """Append to ``rows`` the item rows of one entry: ``of`` is what ``_ITEM_SOURCE``
        picks from a queued entry."""
        entry_id, platform_id, listed, source, category, basis, reference, authority, date, t = of
        actor, state, now = self.actor, self.new_state, self.now
        for i in range(0, len(t), 4):
            value = t[i]
            rows.append(
                (
                    entry_id,
                    value,
                    target_key(value),
                    t[i + 1],
                    t[i + 2],
                    platform_id,
                    category,
                    basis,
                    reference,
                    authority,
                    date,
                    listed,
                    source,
                    actor,
                    t[i + 3],
                    state,
                    now,
                )
            )

    def _rows(self, queued: list[tuple], items: list[tuple]) -> tuple[list[tuple], list[tuple]]:
        """The entry rows and item rows of what ``add`` queued, after ``items`` (rows
        ``add_items`` made)."""
        entries, items = [], list(items)
        for q in queued:
            entries.append(q[:_ENTRY_WIDTH])
            self._item_rows(items, _ITEM_SOURCE(q))
        return entries, items

    def write(self, queued: list[tuple], items: list[tuple]) -> None:
        """Insert what ``add`` and ``add_items`` queued (here or in a reading process)."""
        entries, items = self._rows(queued, items)
        self.written += len(entries)
        if self._first_write:
            self._first_write = False
            if max(len(entries), len(items)) >= BATCH:  # a full batch: a big file
                self._defer_indexes(items)
        if self.postgres:
            self._copy(entries, items)
            return
        if entries:
            self.conn.exec_driver_sql(self.entry_sql, entries)
        if items:
            cursor = self.conn.exec_driver_sql(self.item_sql, items)
            self.items_added += cursor.rowcount if cursor.rowcount >= 0 else len(items)

    def _copy(self, entries: list[tuple], items: list[tuple]) -> None:
        """PostgreSQL: COPY, several times faster than row-by-row inserts. Items go through
        a temporary table, since COPY cannot skip a target another live entry lists."""
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        columns = ", ".join(_ENTRY_COLUMNS)
        if entries:
            with cursor.copy(f"COPY entries ({columns}) FROM STDIN") as copy:
                for row in entries:
                    copy.write_row(row)
        columns = ", ".join(_ITEM_COLUMNS)
        if items and self._first_load is not None:
            items = self._copy_new_items(cursor, columns, items)
        if not items:
            return
        if not self._load_table:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS items_load ON COMMIT DROP AS "
                f"SELECT {columns} FROM items WITH NO DATA"
            )
            self._load_table = True
        with cursor.copy(f"COPY items_load ({columns}) FROM STDIN") as copy:
            for row in items:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO items ({columns}) SELECT {columns} FROM items_load "
            "ON CONFLICT (target_key, decision_ref) WHERE delisted_at IS NULL DO NOTHING"
        )
        self.items_added += cursor.rowcount
        cursor.execute("TRUNCATE items_load")

    def _copy_new_items(self, cursor: Any, columns: str, items: list[tuple]) -> list[tuple]:
        """A first load: COPY straight into items each row whose (target, decision) this
        load has surely not written yet; return the rest (a repeat, or a hash collision),
        which the conflict-skipping path decides exactly. Into an empty, locked table
        nothing else can conflict."""
        seen = self._first_load
        assert seen is not None
        new, maybe = [], []
        for row in items:
            mark = hash((row[2], row[8]))  # target_key, decision_ref: the unique index's
            if mark in seen:
                maybe.append(row)
            else:
                seen.add(mark)
                new.append(row)
        if new:
            with cursor.copy(f"COPY items ({columns}) FROM STDIN") as copy:
                for row in new:
                    copy.write_row(row)
            self.items_added += len(new)
        return maybe

    def _defer_indexes(self, first: list[tuple]) -> None:
        """Into an empty items table (a register's first load), drop the indexes the
        writes do not need and build them again in ``finish``: a sorted build is several
        times faster than millions of inserts into each. The unique ones stay (they
        decide conflicts). Inside the transaction, so a rollback or a kill restores them;
        the table is locked until the commit, which an empty table can afford.

        SQLite keeps an index the ``first`` item rows arrive in the order of (a sync's
        items share their platform, state and times, and their entry ids rise): each row
        is then an append at the index's end, about as cheap as its share of a sorted
        build, and it is done while the other process reads instead of after it.
        PostgreSQL defers them all: there the server keeps an index up, competing with
        the reading process for the CPU, and keeping these up measured no faster."""
        if self.conn.exec_driver_sql("SELECT 1 FROM items LIMIT 1").first() is not None:
            return
        for index in sorted(Item.__table__.indexes, key=lambda i: i.name or ""):
            if index.unique or (not self.postgres and in_index_order(index, first)):
                continue
            index.drop(self.conn)
            self._deferred.append(index)
        if self.postgres:
            # PostgreSQL checks a foreign key with a query per row written (millions);
            # adding the key back at the end checks every row in one join, in this
            # transaction, so a row that would have failed still fails the sync
            for key in _deferred_foreign_keys():
                self.conn.execute(DropConstraint(key))
                self._deferred_keys.append(key)
            self._first_load = set()

    def finish(self) -> None:
        """Write what is queued and rebuild any index dropped for a first load."""
        self.flush()
        if self.postgres and self._deferred:
            self.conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{PG_INDEX_MEMORY}'")
        for index in self._deferred:
            index.create(self.conn)
        self._deferred.clear()
        for key in self._deferred_keys:
            self.conn.execute(AddConstraint(key))
        self._deferred_keys.clear()
        if self.postgres and self.written >= ANALYZE_AFTER:
            # fresh statistics now, not when autovacuum gets to it: without them the
            # planner takes a table of a million entries for a few rows and reads the
            # next sync's live entries through an index, one random page per row
            self.conn.exec_driver_sql("ANALYZE entries, items")
            self.written = 0
        if self.postgres:
            self.conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('entries', 'id'), "
                "(SELECT COALESCE(MAX(id), 1) FROM entries))"
            )


def in_index_order(index: Index, rows: list[tuple]) -> bool:
    """True if item ``rows`` (as ``EntryWriter`` writes them, in that order) come in the
    order SQLite keeps ``index`` in: NULL, then numbers, then text by code point, and a
    column the rows do not write is NULL."""
    positions = [
        _ITEM_COLUMNS.index(c.name) if c.name in _ITEM_COLUMNS else None for c in index.columns
    ]

    def key(row: tuple) -> tuple:
        return tuple(_sqlite_order(None if p is None else row[p]) for p in positions)

    return all(a <= b for a, b in pairwise(map(key, rows)))


def _sqlite_order(value: object) -> tuple[int, object]:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value)


def _deferred_foreign_keys() -> list[ForeignKeyConstraint]:
    """The foreign keys every row of a first load is checked against: items to their
    entries, entries to their register."""
    keys = []
    for table, column in ((Item.__table__, "entry_id"), (Entry.__table__, "register_id")):
        for key in table.foreign_key_constraints:
            if list(key.column_keys) == [column]:
                keys.append(key)
    return keys


# A live entry in memory: its key (64 bits) → id, target count and digest in one int.
MASK64 = (1 << 64) - 1
MET = 0  # an entry met in this file (ids start at 1, so no packed entry is 0)


def pack(entry_id: int, targets: int, digest: int) -> int:
    """One live entry as one int: id (bits 80 up), target count (64-79), digest (0-63)."""
    return (entry_id << 80) | (min(targets, 0xFFFF) << 64) | digest


def live_entries(session: Session, register_id: int) -> dict[int, int]:
    """Live entries of a source: 64-bit key → ``pack``, compactly (millions of them)."""
    conn = session.connection()
    # most of the table: read it in order (SQLite would otherwise look up every row
    # through the key index)
    scan = "NOT INDEXED " if conn.dialect.name == "sqlite" else ""
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    # the driver's own cursor: plain tuples for millions of rows
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(
        f"SELECT key, id, targets, digest FROM entries {scan}"
        f"WHERE register_id = {mark} AND delisted_at IS NULL",
        (register_id,),
    )
    live: dict[int, int] = {}
    while rows := cursor.fetchmany(50_000):
        for key, eid, n, digest in rows:
            live[int(key, 16)] = (eid << 80) | (min(n, 0xFFFF) << 64) | int(digest, 16)
    cursor.close()
    return live


def register_row(session: Session, name: str, fmt: str) -> RegisterSource:
    source = session.scalar(select(RegisterSource).where(RegisterSource.name == name))
    if source is None:
        source = RegisterSource(name=name, format=fmt)
        session.add(source)
        session.flush()
    return source


def entry_content(row: Entry) -> str:
    """An entry's stored columns as JSON (the revision kept when a sync changes it)."""
    data = {c.name: getattr(row, c.name) for c in Entry.__table__.columns}
    return json.dumps(data, default=str, ensure_ascii=False, sort_keys=True)


def delist_entries(session: Session, entry_ids: list[int], at: datetime, decision: str) -> None:
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
        delist_items(session, item_ids, at, decision)


def delist_items(session: Session, item_ids: list[int], at: datetime, decision: str) -> None:
    for start in range(0, len(item_ids), BATCH):
        chunk = item_ids[start : start + BATCH]
        session.execute(
            update(Item)
            .where(Item.id.in_(chunk))
            .values(delisted_at=at, delist_decision=decision)
            .execution_options(synchronize_session=False)
        )
        projection.apply_delist_many(session, chunk, at)
