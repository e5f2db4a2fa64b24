"""Grouping open items into notices and writing them to the outbox.

Rules (``plan``, pure):

- An item is *due a notice* when it is open (``items.state = 'open'``, not delisted) and
  no notice of it is still running (a notice is running until its ``deadline_at``).
- A due item that was never noticed goes into the platform's *initial* notice; a due item
  that was noticed before (its earlier deadline passed and it is still open) goes into a
  *repeat* notice. Items claimed by the platform (``claimed``) are not re-noticed while the
  claim awaits verification.
- A notice's ``deadline_at`` is the earliest deadline of its items' categories under the
  platform's profile. An item's ``deadline_at`` projection is set from its own category
  by its first notice (the legal deadline); repeat notices do not move it.
- Large groups are split into notices of at most ``max_items`` items.

``send`` writes the notices, their items, the items' deadline projection (through
``ledger.projection.set_deadline``) and one ``notice.issued`` event per notice in one
transaction; the delivery worker picks them up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, insert, select

from takedown import config as config_mod
from takedown.config import Profile
from takedown.errors import NotFound
from takedown.ledger import projection
from takedown.model import DeliveryState, ItemState, NoticeKind, NoticeRecord
from takedown.notices.deadlines import item_deadline, notice_deadline
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item, Notice, NoticeItem, Platform

MAX_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class DueItem:
    id: int
    category: str
    noticed_before: bool


@dataclass(frozen=True)
class PlannedNotice:
    kind: NoticeKind
    deadline_at: datetime
    items: tuple[DueItem, ...]


@dataclass
class SendResult:
    platform: str
    notices: list[int] = field(default_factory=list)
    initial_items: int = 0
    repeat_items: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "platform": self.platform,
            "notices": self.notices,
            "initial_items": self.initial_items,
            "repeat_items": self.repeat_items,
        }


def plan(
    due: Iterable[DueItem], profile: Profile, now: datetime, max_items: int = MAX_ITEMS
) -> list[PlannedNotice]:
    """Group due items into notices: initial ones first, then repeats; ids ascending."""
    items = sorted(due, key=lambda d: d.id)
    initial = [d for d in items if not d.noticed_before]
    repeat = [d for d in items if d.noticed_before]
    out: list[PlannedNotice] = []
    for kind, group in ((NoticeKind.INITIAL, initial), (NoticeKind.REPEAT, repeat)):
        for start in range(0, len(group), max_items):
            chunk = tuple(group[start : start + max_items])
            deadline = notice_deadline(profile, (d.category for d in chunk), now)
            out.append(PlannedNotice(kind, deadline, chunk))
    return out


def _running_notice(now: datetime):  # type: ignore[no-untyped-def]
    """SQL: a notice of this item is still running at ``now``."""
    return exists().where(
        NoticeItem.item_id == Item.id,
        NoticeItem.notice_id == Notice.id,
        Notice.deadline_at > now,
    )


def _noticed_before():  # type: ignore[no-untyped-def]
    return exists().where(NoticeItem.item_id == Item.id)


def due_items(session, platform_id: int, now: datetime) -> list[DueItem]:  # type: ignore[no-untyped-def]
    """The platform's items that are due a notice at ``now``."""
    rows = session.execute(
        select(Item.id, Item.category, _noticed_before())
        .where(
            Item.platform_id == platform_id,
            Item.state == ItemState.OPEN.value,
            Item.delisted_at.is_(None),
            ~_running_notice(now),
        )
        .order_by(Item.id)
    ).all()
    return [DueItem(r[0], r[1], bool(r[2])) for r in rows]


def send(
    db: Database,
    *,
    now: datetime,
    actor: str,
    platform: str | None = None,
    max_items: int = MAX_ITEMS,
) -> list[SendResult]:
    """Create the notices due at ``now`` (for one platform or all); one transaction."""
    cfg = config_mod.default()
    results: list[SendResult] = []
    with db.session() as session:
        query = select(Platform).order_by(Platform.slug)
        if platform is not None:
            query = query.where(Platform.slug == platform)
        platforms = session.scalars(query).all()
        if platform is not None and not platforms:
            raise NotFound(f"unknown platform {platform!r}", where="--platform")
        for p in platforms:
            profile = cfg.profile(p.profile, where=f"platform {p.slug}: profile")
            result = SendResult(p.slug)
            for planned in plan(due_items(session, p.id, now), profile, now, max_items):
                result.notices.append(_write(session, p, profile, planned, now, actor))
                if planned.kind is NoticeKind.INITIAL:
                    result.initial_items += len(planned.items)
                else:
                    result.repeat_items += len(planned.items)
            results.append(result)
    return results


def _write(
    session, platform: Platform, profile: Profile, planned: PlannedNotice, now: datetime, actor: str
) -> int:  # type: ignore[no-untyped-def]
    notice = Notice(
        platform_id=platform.id,
        kind=planned.kind.value,
        issued_at=now,
        deadline_at=planned.deadline_at,
        delivery_state=DeliveryState.PENDING.value,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(notice)
    session.flush()
    ids = [d.id for d in planned.items]
    session.execute(insert(NoticeItem), [{"notice_id": notice.id, "item_id": i} for i in ids])
    if planned.kind is NoticeKind.INITIAL:
        categories = {d.category for d in planned.items}
        projection.set_deadline(
            session, notice.id, {c: item_deadline(profile, c, now) for c in categories}
        )
    audit.record(
        session,
        at=now,
        actor=actor,
        type="notice.issued",
        payload={
            "notice": notice.id,
            "platform": platform.slug,
            "kind": planned.kind.value,
            "items": len(ids),
            "first_item": ids[0],
            "last_item": ids[-1],
            "deadline_at": planned.deadline_at.isoformat(),
        },
    )
    return notice.id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def notice_documents(session, notice_ids: Iterable[int]) -> dict[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    """The notices as sent to the platform (two queries for any number of notices).

    Only facts that never change go in, so every delivery attempt of a notice carries the
    same bytes (receivers may compare)."""
    ids = sorted(set(notice_ids))
    docs: dict[int, dict[str, object]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for n, slug in session.execute(
            select(Notice, Platform.slug)
            .join(Platform, Platform.id == Notice.platform_id)
            .where(Notice.id.in_(chunk))
        ).all():
            docs[n.id] = {
                "notice_id": n.id,
                "platform": slug,
                "kind": n.kind,
                "issued_at": _iso(n.issued_at),
                "deadline_at": _iso(n.deadline_at),
                "items": [],
            }
        rows = session.execute(
            select(
                NoticeItem.notice_id,
                Item.id,
                Item.target,
                Item.kind,
                Item.category,
                Item.basis,
                Item.decision_ref,
                Item.authority,
                Item.decision_date,
            )
            .join(Item, Item.id == NoticeItem.item_id)
            .where(NoticeItem.notice_id.in_(chunk))
            .order_by(NoticeItem.notice_id, Item.id)
        ).all()
        for r in rows:
            docs[r[0]]["items"].append(  # type: ignore[attr-defined]
                {
                    "id": r[1],
                    "target": r[2],
                    "kind": r[3],
                    "category": r[4],
                    "basis": r[5],
                    "decision": {"reference": r[6], "authority": r[7], "date": r[8]},
                }
            )
    return docs


def notice_document(session, notice_id: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """One notice as sent to the platform."""
    doc = notice_documents(session, [notice_id]).get(notice_id)
    if doc is None:
        raise NotFound(f"no notice {notice_id}", where="notice")
    return doc


def encode(document: dict[str, object]) -> bytes:
    """Canonical JSON bytes of a notice document."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def list_notices(
    db: Database,
    *,
    now: datetime,
    platform: str | None = None,
    overdue: bool = False,
    limit: int | None = None,
    after: int | None = None,
    state: str | None = None,
) -> list[NoticeRecord]:
    """Notices with item counts, oldest first; ``overdue``: past deadline with items still
    open; ``after``: only ids above it (a page); ``state``: this delivery state only."""
    from sqlalchemy import case, func

    with db.reading() as session:
        open_count = func.sum(case((Item.state == ItemState.OPEN.value, 1), else_=0))
        query = (
            select(
                Notice,
                Platform.slug,
                func.count(NoticeItem.item_id),
                open_count,
            )
            .join(Platform, Platform.id == Notice.platform_id)
            .join(NoticeItem, NoticeItem.notice_id == Notice.id)
            .join(Item, Item.id == NoticeItem.item_id)
            .group_by(Notice.id, Platform.slug)
            .order_by(Notice.id)
        )
        if platform is not None:
            query = query.where(Platform.slug == platform)
        if overdue:
            query = query.where(Notice.deadline_at <= now).having(open_count > 0)
        if after is not None:
            query = query.where(Notice.id > after)
        if state is not None:
            query = query.where(Notice.delivery_state == state)
        if limit is not None:
            query = query.limit(limit)
        out = []
        for n, slug, count, open_n in session.execute(query).all():
            out.append(
                NoticeRecord(
                    n.id,
                    slug,
                    n.kind,
                    n.issued_at,
                    n.deadline_at,
                    n.delivery_state,
                    n.attempts,
                    n.delivered_at,
                    n.acknowledged_at,
                    int(count),
                    int(open_n or 0),
                )
            )
        return out


def show_notice(db: Database, notice_id: int) -> dict[str, object]:
    """A notice's document, delivery state and delivery log."""
    from takedown.store.schema import DeliveryAttempt

    with db.reading() as session:
        doc = notice_document(session, notice_id)
        n = session.get(Notice, notice_id)
        assert n is not None
        attempts = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.notice_id == notice_id)
            .order_by(DeliveryAttempt.id)
        ).all()
        states = dict(
            session.execute(
                select(Item.id, Item.state)
                .join(NoticeItem, NoticeItem.item_id == Item.id)
                .where(NoticeItem.notice_id == notice_id)
            ).all()
        )
        for item in doc["items"]:  # type: ignore[union-attr]
            item["state"] = states.get(item["id"])  # type: ignore[index]
        doc.update(
            delivery_state=n.delivery_state,
            attempts=n.attempts,
            next_attempt_at=_iso(n.next_attempt_at),
            delivered_at=_iso(n.delivered_at),
            acknowledged_at=_iso(n.acknowledged_at),
            delivery_log=[
                {
                    "at": _iso(a.at),
                    "status": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                }
                for a in attempts
            ],
        )
        return doc
