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

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.errors import InputError, NotFound
from takedown.model import EntryRecord
from takedown.perf import no_cycle_collection
from takedown.registry import pipeline
from takedown.registry.checks import EntryChecks
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
from takedown.registry.store import (
    MASK64,
    MET,
    EntryWriter,
    PlatformIds,
    cells_text,
    delist_entries,
    delist_items,
    entry_content,
    hex64,
    live_entries,
    register_row,
)
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Entry, EntryRevision, Item, RegisterSource

MAX_ERRORS_SHOWN = 20


MAX_EXAMPLES = 5
PROGRESS_EVERY = 20_000  # entries read between progress reports when none is written
PARALLEL_BYTES = 256 * 1024  # a smaller file is read here: a second process would not pay


DEFAULT_MAX_DELIST = 10.0  # percent of a source's live entries one sync may delist


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
        data = dataclasses.asdict(self)
        data["file"] = data.pop("path")
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data

    def example(self, kind: str, text: str) -> None:
        shown = self.examples.setdefault(kind, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(text)


class _CountingReader(io.RawIOBase):
    """Wraps a binary file, hashing what is read and reporting how much (progress bar)."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None] | None, size: int = 0) -> None:
        self._raw = raw
        self.size = size  # of the file (a zip's, compressed)
        self.on_read = on_read
        self.digest = hashlib.sha256()
        self._count = 0

    def take_count(self) -> int:
        """Bytes read since the last call."""
        count, self._count = self._count, 0
        return count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        self._count += n
        if self.on_read and n:
            self.on_read(n)
        return n


@contextlib.contextmanager
def _open_plain(path: Path, *, signer_cert: Path | None, facts: FileFacts) -> Iterator[BinaryIO]:
    if signer_cert is not None:
        raise InputError("this format has no signature to check", where="--signer-cert")
    with path.open("rb") as raw:
        yield raw


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
            counting = _CountingReader(raw, on_read, path.stat().st_size)
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


class _Pass:
    """One pass over a register file against the live entries of its source: what is
    new (written as it is read), changed, unchanged, repeated or bad."""

    def __init__(
        self,
        session: Session,
        result: SyncResult,
        *,
        now: datetime,
        actor: str,
        defaults: ReadDefaults,
        checks: EntryChecks,
        skip_invalid: bool,
    ) -> None:
        self.result = result
        self.register = register_row(session, result.source, result.format)
        # live entries by key; a key met in the file is set to MET, so what is left is gone
        self.live = live_entries(session, self.register.id)
        self.live_before = len(self.live)
        self.by_digest: dict[int, int] | None = None
        if result.format in FINGERPRINTING:  # rows seen last time need no parsing
            self.by_digest = {packed & MASK64: k for k, packed in self.live.items()}
        self.writer = EntryWriter(session, self.register.id, now, actor)
        self.platforms = PlatformIds(session, all_known=True)
        self.defaults = defaults
        self.default_pid = (
            self.platforms.get(defaults.platform, "--platform") if defaults.platform else None
        )
        self.checks = checks
        self.skip_invalid = skip_invalid
        self.changed: list[tuple[int, EntryRecord, int, int | None]] = []
        self.rejected_lines: list[str] = []
        self.would_add_items = 0
        self.gone_ids: list[int] | None = None  # as a reading process found them

    def take(self, entry: EntryRecord | RowError | Known) -> None:
        """Account for one thing the reader yielded."""
        if type(entry) is Known:
            self._known(entry.fingerprint)
        elif isinstance(entry, RowError):
            self._reject(f"{self.result.path}:{entry.line}: {entry.message}", entry.raw)
        else:
            try:
                self.checks.check(entry)
                pid = self.default_pid
                if entry.platform and entry.platform != self.defaults.platform:
                    pid = self.platforms.get(entry.platform, entry.source)
            except (InputError, NotFound) as exc:
                self._reject(str(exc), _describe(entry))
            else:
                self._entry(entry, pid)

    def _known(self, fingerprint: int) -> None:
        """A row as it was last time: not even parsed."""
        result = self.result
        k = self.by_digest[fingerprint]  # type: ignore[index]
        result.entries += 1
        packed = self.live[k]
        if packed == MET:
            result.duplicates += 1
            return
        self.live[k] = MET
        result.targets += (packed >> 64) & 0xFFFF
        result.unchanged += 1

    def _entry(self, entry: EntryRecord, pid: int | None) -> None:
        result = self.result
        result.entries += 1
        result.targets += len(entry.targets)
        k = entry_key(entry)
        found = self.live.get(k)
        if found == MET:
            result.duplicates += 1
            return
        self.live[k] = MET
        digest = entry.fingerprint
        if digest is None:
            digest = entry_digest(entry)
        if found is None:
            result.added += 1
            if result.added <= MAX_EXAMPLES:
                result.example("added", _describe(entry))
            if result.plan:
                self.would_add_items += len(entry.targets)
            elif not result.rejected or self.skip_invalid:
                self.writer.add(entry, k, digest, pid)
        elif found & MASK64 == digest or result.mode == "import":
            result.unchanged += 1  # an import adds what is new and touches nothing
        else:
            result.changed += 1
            result.example("changed", _describe(entry))
            self.changed.append((found >> 80, entry, digest, pid))

    def _reject(self, message: str, raw: str) -> None:
        result = self.result
        result.rejected += 1
        if len(result.errors) < MAX_ERRORS_SHOWN:
            result.errors.append(message)
        if self.skip_invalid:
            self.rejected_lines.append(f"{message}\t{raw}")

    def gone(self) -> list[int]:
        """The ids of the live entries the file did not list."""
        if self.gone_ids is not None:
            return self.gone_ids
        return [packed >> 80 for packed in self.live.values() if packed != MET]

    def outcome(self) -> tuple:
        """What a reading process found, for ``adopt`` in the writing one."""
        return (
            self.result,
            self.changed,
            self.rejected_lines,
            self.would_add_items,
            self.gone(),
            self.checks.admitted,
            self.writer.next_id,
        )

    def adopt(self, outcome: tuple) -> None:
        """Take over what the reading process found (``outcome``)."""
        result, self.changed, self.rejected_lines, self.would_add_items = outcome[:4]
        self.gone_ids, self.checks.admitted, self.writer.next_id = outcome[4:]
        for f in dataclasses.fields(result):
            setattr(self.result, f.name, getattr(result, f.name))


def _read_file(
    one: _Pass,
    entries: Iterator[EntryRecord | RowError | Known],
    facts: FileFacts,
    counting: _CountingReader,
) -> None:
    """Take every entry the reader yields: in a second process where one can be forked
    (it parses while this one writes), else here."""
    if not pipeline.can_fork() or counting.size < PARALLEL_BYTES:
        for entry in entries:
            one.take(entry)
        one.result.sha256 = counting.digest.hexdigest()
        return
    on_read = counting.on_read

    def work(send: pipeline.Send) -> tuple:
        counting.on_read = None  # the progress bar is this process's: bytes go with rows
        one.writer.sink = lambda rows, items: send((rows, items, counting.take_count()))
        for n, entry in enumerate(entries, start=1):
            one.take(entry)
            if n % PROGRESS_EVERY == 0 and not one.writer.entries:
                send(([], [], counting.take_count()))
        one.writer.flush()
        one.result.sha256 = counting.digest.hexdigest()
        return one.outcome(), facts

    def take(batch: tuple[list[tuple], list[tuple], int]) -> None:
        rows, items, read = batch
        one.writer.write(rows, items)
        if on_read is not None and read:
            on_read(read)

    outcome, child_facts = pipeline.in_reading_process(work, take)
    one.adopt(outcome)
    for f in dataclasses.fields(facts):
        setattr(facts, f.name, getattr(child_facts, f.name))


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
    one = _Pass(
        session,
        result,
        now=now,
        actor=actor,
        defaults=defaults,
        checks=checks,
        skip_invalid=skip_invalid,
    )
    _read_file(one, read(one.by_digest), facts, counting)
    result.updated_at = facts.updated_at
    result.signature = facts.signature
    if result.rejected and not skip_invalid:
        return
    at = facts.updated_at or now
    register = one.register
    gone = one.gone() if result.mode == "sync" else []
    if result.mode == "sync":
        result.refused = _refusal(
            register, facts, one.live_before, len(gone), allow_older, max_delist
        )
        if result.refused:
            return
        result.delisted = len(gone)
        for entry_id in gone[:MAX_EXAMPLES]:
            result.example("delisted", f"entry {entry_id}")
    if result.plan:
        result.items_added = one.would_add_items
        return
    one.writer.finish()
    if one.changed:
        _update_entries(session, one.writer, one.changed, at)
        one.writer.finish()
    result.items_added = one.writer.items_added
    if gone:
        decision = f"sync of {result.source}: not in the register of {at.isoformat()}"
        delist_entries(session, gone, at, decision)
    if one.rejected_lines:
        result.report = _write_report(
            one.rejected_lines, report_path or f"{result.path}.rejected.txt"
        )
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


def _with_targets(entry: EntryRecord, targets: tuple) -> EntryRecord:
    return dataclasses.replace(entry, targets=targets)


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
                EntryRevision(entry_id=entry_id, replaced_at=at, content=entry_content(row))
            )
            d, cells = entry.decision, entry.cells
            row.digest = hex64(digest)
            row.targets = len(entry.targets)
            row.ips, row.domains, row.urls = (
                cells_text(cells.ips),
                cells_text(cells.domains),
                cells_text(cells.urls),
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
            delist_items(session, gone, at, "its register entry no longer lists it")


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
