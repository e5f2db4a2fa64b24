"""Shared types and small helpers of the register formats."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from takedown.errors import InputError
from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry, TargetKind
from takedown.registry.entries import Reject

_DATE = re.compile(r"\d{4}-\d\d-\d\d\Z")


@dataclass(frozen=True)
class ReadDefaults:
    """What an import fills in where the file says nothing (from the command line)."""

    category: str = "other"
    basis: str = ""
    platform: str | None = None
    decision: str | None = None  # where an entry's decision is empty
    authority: str | None = None  # where an entry's authority is empty


@dataclass
class FileFacts:
    """What a reader learns about a register file as a whole, filled in as it reads."""

    updated_at: datetime | None = None  # the register's own update time (``Updated:``)
    format_version: str | None = None
    # how the file's signature was checked: "verified: <signer>", or None if it was not
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class Known:
    """A row the reader was told it already knows (by fingerprint), so did not parse."""

    fingerprint: int


def fingerprint_salt(defaults: ReadDefaults) -> bytes:
    """What a row's fingerprint depends on besides its bytes: the import's defaults."""
    fields = (defaults.category, defaults.basis, defaults.platform, defaults.decision,
              defaults.authority)  # fmt: skip
    return "\x1f".join(f or "" for f in fields).encode("utf-8") + b"\x1e"


def row_fingerprinter(salt: bytes) -> Callable[[bytes], int]:
    """A function giving 64 bits that identify a row as written, under the defaults
    ``salt`` stands for (blake2b of salt and row; the salt is hashed once, its state copied
    per row)."""
    salted = hashlib.blake2b(salt, digest_size=8)
    from_bytes = int.from_bytes

    def fingerprint(raw: bytes) -> int:
        h = salted.copy()
        h.update(raw)
        return from_bytes(h.digest(), "big")

    return fingerprint


@dataclass(frozen=True)
class RowError:
    """A row a reader rejected; the caller reports it as ``FILE:LINE: message``."""

    line: int
    message: str
    raw: str


@functools.lru_cache(maxsize=4096)
def valid_date(text: str) -> bool:
    """True if ``text`` is a real calendar date written ``YYYY-MM-DD``."""
    if not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


# What the DNS and address writers read of an item: id, kind, target text, host.
TargetRow = tuple[int, TargetKind, str, str | None]


def listed_targets(entries: Iterable[RegisterEntry]) -> Iterator[TargetRow]:
    """The listed items of ``entries`` as the rows the DNS and address writers read."""
    for entry in entries:
        if is_listed(entry):
            target = entry.record.target
            yield entry.id, target.kind, target.value, target.host


def is_listed(entry: RegisterEntry) -> bool:
    """True unless the entry has been delisted (enforcement formats skip delisted ones)."""
    return entry.state is not ItemState.DELISTED and entry.delisted_at is None


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def raw_text(raw: bytes, encoding: str) -> str:
    """A rejected line as text for the report, whatever its bytes."""
    return raw.decode(encoding, errors="replace").rstrip("\r\n")


FIELDS = (
    "id",
    "target",
    "kind",
    "category",
    "basis",
    "decision",
    "authority",
    "decision_date",
    "platform",
    "listed_at",
    "delisted_at",
    "state",
    "source",
    "flags",
)


def entry_fields(entry: RegisterEntry) -> dict[str, object]:
    """Every field of a stored entry, as the jsonl and csv exports write them."""
    record = entry.record
    return {
        "id": entry.id,
        "target": record.target.value,
        "kind": str(record.target.kind),
        "category": record.category,
        "basis": record.basis,
        "decision": record.decision.reference,
        "authority": record.decision.authority,
        "decision_date": record.decision.date,
        "platform": record.platform,
        "listed_at": record.listed_at.isoformat() if record.listed_at else None,
        "delisted_at": entry.delisted_at.isoformat() if entry.delisted_at else None,
        "state": str(entry.state),
        "source": record.source,
        "flags": list(record.flags),
    }


def record_from_fields(fields: dict[str, object], where: str, defaults: ReadDefaults) -> ItemRecord:
    """Build an ItemRecord from exported fields; ``id``, ``state``, ``delisted_at`` and
    ``source`` are ignored (the new provenance is ``where``). Raise Reject."""
    from takedown.registry.targets import parse_target_flags

    def text(name: str) -> str:
        value = fields.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise Reject(f"{name}: expected text, got {type(value).__name__}")
        return value.strip()

    raw_target = text("target")
    if not raw_target:
        raise Reject("target: missing")
    try:
        target, flags = parse_target_flags(raw_target)
    except InputError as exc:
        raise Reject(f"target: {exc.message}") from None
    kind = text("kind")
    if kind and kind != target.kind:
        raise Reject(f"kind: {kind!r} does not match the target, which is a {target.kind}")
    reference = text("decision") or (defaults.decision or "")
    if not reference:
        raise Reject("decision: missing")
    decision_date = text("decision_date")
    if decision_date and not valid_date(decision_date):
        raise Reject(f"decision_date: unparseable date {decision_date!r} (expected YYYY-MM-DD)")
    basis = text("basis") or defaults.basis
    if not basis:
        raise Reject("basis: missing (give one with the import)")
    listed = text("listed_at")
    try:
        listed_at = datetime.fromisoformat(listed) if listed else None
    except ValueError:
        raise Reject(f"listed_at: unparseable time {listed!r} (expected ISO 8601)") from None
    raw_flags = fields.get("flags") or []
    if not isinstance(raw_flags, list) or not all(isinstance(f, str) for f in raw_flags):
        raise Reject("flags: expected a list of strings")
    return ItemRecord(
        target=target,
        category=text("category") or defaults.category,
        basis=basis,
        decision=Decision(reference, text("authority") or None, decision_date or None),
        platform=text("platform") or defaults.platform,
        listed_at=listed_at,
        source=where,
        flags=tuple(dict.fromkeys([*raw_flags, *flags])),
    )
