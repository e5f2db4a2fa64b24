"""Test data for verify and ledger tests: platforms, items, notices inserted directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from takedown.store.db import Database
from takedown.store.schema import Item, Notice, NoticeItem, Platform, Response

T0 = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)


def add_platform(db: Database, slug: str = "twitter", now: datetime = T0) -> int:
    with db.session() as s:
        pid = s.scalar(select(Platform.id).where(Platform.slug == slug))
        if pid is None:
            p = Platform(slug=slug, name=slug.title(), created_at=now)
            s.add(p)
            s.flush()
            pid = p.id
        return pid


def add_items(
    db: Database,
    n: int,
    base_url: str,
    *,
    platform: str = "twitter",
    category: str = "suicide",
    listed_at: datetime = T0,
    start: int = 0,
) -> list[int]:
    """Insert ``n`` URL items ``{base_url}/s/{k}`` for k in start..start+n-1; return ids."""
    pid = add_platform(db, platform)
    rows = [
        {
            "target": f"{base_url}/s/{k}",
            "kind": "url",
            "host": None,
            "platform_id": pid,
            "category": category,
            "basis": "test basis",
            "decision_ref": f"D-{platform}-{k}",
            "listed_at": listed_at,
            "state": "open",
            "state_at": listed_at,
            "flags": "",
        }
        for k in range(start, start + n)
    ]
    with db.session() as s:
        for i in range(0, len(rows), 5000):
            s.execute(insert(Item), rows[i : i + 5000])
        return list(
            s.scalars(select(Item.id).where(Item.platform_id == pid).order_by(Item.id)).all()
        )[-n:]


def add_notice(
    db: Database,
    item_ids: list[int],
    issued_at: datetime,
    deadline: timedelta = timedelta(hours=24),
    platform: str = "twitter",
) -> int:
    pid = add_platform(db, platform)
    with db.session() as s:
        n = Notice(
            platform_id=pid,
            kind="initial",
            issued_at=issued_at,
            deadline_at=issued_at + deadline,
            delivery_state="delivered",
        )
        s.add(n)
        s.flush()
        s.execute(insert(NoticeItem), [{"notice_id": n.id, "item_id": i} for i in item_ids])
        # the notices module keeps items.deadline_at as the first notice's deadline
        from takedown import ledger

        categories = s.scalars(select(Item.category).where(Item.id.in_(item_ids)).distinct())
        ledger.set_deadline(s, n.id, {c: issued_at + deadline for c in categories})
        return n.id


def add_response(
    db: Database, item_id: int, action: str, at: datetime, platform: str = "twitter"
) -> None:
    """A platform response and its projection (as the notices module records it)."""
    from takedown import ledger

    pid = add_platform(db, platform)
    with db.session() as s:
        s.add(Response(item_id=item_id, platform_id=pid, action=action, at=at))
        s.flush()
        ledger.apply_response(s, item_id, action, at)
