"""The audit log: append-only events, each hash-chained to the one before."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from takedown.store.db import Database
from takedown.store.schema import AuditHead, Event

GENESIS = "0" * 64


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, seq: int, at: datetime, actor: str, type_: str, payload: Any) -> str:
    """SHA-256 over the previous hash and this event's canonical fields."""
    body = _canonical([prev_hash, seq, at.isoformat(), actor, type_, payload])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A point of the chain: the sequence number of an event and its hash."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}

    @classmethod
    def from_json(cls, doc: Any) -> ChainHead | None:
        """The head in ``doc`` (``{"seq", "hash"}``), None when absent or malformed."""
        if not isinstance(doc, dict):
            return None
        seq, digest = doc.get("seq"), doc.get("hash")
        if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(digest, str):
            return cls(seq, digest)
        return None


def current_head(session: Session) -> ChainHead:
    """The chain's head now (seq 0 and the genesis hash before the first event)."""
    row = session.get(AuditHead, 1)
    return ChainHead(0, GENESIS) if row is None else ChainHead(row.seq, row.hash)


def record_many(
    session: Session, *, at: datetime, actor: str, events: Sequence[tuple[str, Any]]
) -> list[Event]:
    """Append ``(type, payload)`` events in the caller's transaction, in order."""
    if not events:
        return []
    n = len(events)
    # Bumping the head first takes the row's write lock (SQLite: the database's), so two
    # writers can never chain onto the same predecessor.
    row = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + n)
        .returning(AuditHead.seq, AuditHead.hash)
    ).first()
    if row is None:
        session.add(AuditHead(id=1, seq=n, hash=GENESIS))
        session.flush()
        last, prev = n, GENESIS
    else:
        last, prev = row
    out = []
    for seq, (type_, payload) in enumerate(events, start=last - n + 1):
        doc = json.loads(_canonical(payload))  # store exactly what is hashed
        digest = event_hash(prev, seq, at, actor, type_, doc)
        out.append(
            Event(seq=seq, at=at, actor=actor, type=type_, payload=doc, prev_hash=prev, hash=digest)
        )
        prev = digest
    session.add_all(out)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    return out


def record(session: Session, *, at: datetime, actor: str, type: str, payload: Any) -> Event:
    """Append one event in the caller's transaction (so it commits with the change)."""
    return record_many(session, at=at, actor=actor, events=[(type, payload)])[0]


@dataclass(frozen=True)
class ChainReport:
    events: int
    first_broken: int | None = None  # seq of the first event that does not verify
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken is None


@dataclass(frozen=True)
class AnchorReport:
    """Published heads checked against the local chain."""

    checked: int
    problems: tuple[str, ...] = ()
    newest: ChainHead | None = None  # the newest published head seen

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_anchors(session: Session, heads: Sequence[ChainHead]) -> AnchorReport:
    """Check that the chain still holds every head that was published.

    A head whose event is gone means the chain was cut back (events deleted, the head
    rewound); a head whose event has another hash means it was rewritten. Events after the
    newest published head are anchored by nothing yet.
    """
    problems: list[str] = []
    unique = sorted(set(heads), key=lambda h: h.seq)
    for head in unique:
        if head.seq == 0:
            if head.hash != GENESIS:
                problems.append(f"published head 0 has hash {head.hash[:16]}…, not the genesis")
            continue
        event = session.scalar(select(Event).where(Event.seq == head.seq))
        if event is None:
            problems.append(f"event {head.seq} was published as the head and is gone")
        elif event.hash != head.hash:
            problems.append(
                f"event {head.seq} was published with hash {head.hash[:16]}… and now has "
                f"{event.hash[:16]}…"
            )
    return AnchorReport(len(unique), tuple(problems), unique[-1] if unique else None)


def verify_chain(session: Session, *, batch: int = 10_000) -> ChainReport:
    """Walk the chain from the start; report the first broken link."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(Event).where(Event.seq > last_seq).order_by(Event.seq).limit(batch)
        ).all()
        if not rows:
            break
        for ev in rows:
            count += 1
            if ev.seq != expected_seq:
                return ChainReport(count, expected_seq, f"event {expected_seq} is missing")
            if ev.prev_hash != prev:
                return ChainReport(count, ev.seq, "previous-hash link does not match")
            if event_hash(prev, ev.seq, ev.at, ev.actor, ev.type, ev.payload) != ev.hash:
                return ChainReport(count, ev.seq, "content does not match its hash")
            prev = ev.hash
            expected_seq += 1
            last_seq = ev.seq
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != last_seq or head.hash != prev):
        return ChainReport(count, last_seq + 1, "events after the last one were removed")
    return ChainReport(count)


def recent_events(db: Database, *, limit: int, type_: str | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` events (of ``type_`` only, if given), oldest first, as plain data."""
    with db.reading() as session:
        query = select(Event).order_by(Event.seq.desc()).limit(limit)
        if type_:
            query = query.where(Event.type == type_)
        events = list(reversed(session.scalars(query).all()))
        return [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "type": e.type,
                "payload": e.payload,
                "hash": e.hash,
            }
            for e in events
        ]
