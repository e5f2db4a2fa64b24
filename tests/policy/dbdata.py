"""Database fixtures for the ladder: a platform and its facts inserted directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from takedown.store.db import Database
from takedown.store.schema import (
    Check,
    Item,
    Notice,
    NoticeItem,
    Platform,
    PlatformHost,
    Response,
)
from tests.policy.scenario import (
    DAY,
    FLAGGED,
    NEW_ITEMS_FROM,
    NEW_PER_DAY,
    ONLINE_10_MARCH,
    remaining_2021,
)

CATEGORIES = ("suicide", "csam", "drugs", "minors-protest")
LONG_AGO = datetime(2020, 6, 1, tzinfo=UTC)


def add_platform(db: Database, slug: str, hosts: dict[str, str] | None = None) -> int:
    with db.session() as s:
        p = Platform(slug=slug, name=slug.title(), created_at=LONG_AGO)
        s.add(p)
        s.flush()
        for pattern, cls in (hosts or {}).items():
            s.add(PlatformHost(platform_id=p.id, pattern=pattern, content_class=cls))
        return p.id


def _add_items(s, pid: int, n: int, listed: datetime, tag: str, first: int = 0) -> list[int]:  # type: ignore[no-untyped-def]
    rows = [
        {
            "target": f"https://{tag}.example/status/{first + k}",
            "kind": "url",
            "host": f"{tag}.example",
            "platform_id": pid,
            "category": CATEGORIES[(first + k) % len(CATEGORIES)],
            "basis": "art. 15.1",
            "decision_ref": f"RKN-{tag}-{(first + k) % 7}",
            "authority": "Roskomnadzor",
            "decision_date": "2020-05-20",
            "listed_at": listed,
            "state": "open",
            "flags": "",
        }
        for k in range(n)
    ]
    s.execute(insert(Item), rows)
    return list(
        s.scalars(
            select(Item.id)
            .where(Item.platform_id == pid, Item.listed_at == listed)
            .order_by(Item.id)
        )
    )[-n:]


def _notice(s, pid: int, ids: list[int], issued: datetime) -> None:  # type: ignore[no-untyped-def]
    notice = Notice(
        platform_id=pid, kind="initial", issued_at=issued, deadline_at=issued + timedelta(hours=24)
    )
    s.add(notice)
    s.flush()
    s.execute(insert(NoticeItem), [{"notice_id": notice.id, "item_id": i} for i in ids])


def _remove(s, pid: int, ids: list[int], at: datetime) -> None:  # type: ignore[no-untyped-def]
    if not ids:
        return
    s.execute(
        insert(Response),
        [{"item_id": i, "platform_id": pid, "action": "removed", "at": at} for i in ids],
    )
    s.execute(
        insert(Check),
        [{"item_id": i, "at": at + timedelta(hours=1), "verdict": "removed"} for i in ids],
    )


def load_2021(db: Database, until: datetime, scale: int = 1) -> int:
    """Twitter as in 2021: 6,200 flagged; 3,168 overdue from 10 March; the backlog removed
    along ``scenario.remaining_2021``; then five new items a day, each removed in 3 hours.

    ``scale`` divides the counts (10: 620 flagged, 317 overdue, 65 left on 16 May = 89.5%
    removed, 56 left on 17 May = 91.0%) to keep database tests quick; the shares and so the
    dates are those of the full case."""
    flagged = FLAGGED // scale
    online = round(ONLINE_10_MARCH / scale)
    may16, may17 = round(650 / scale), round(563 / scale)
    pid = add_platform(
        db, "twitter", {"twitter.com": "text", "*.twimg.com": "media", "t.co": "links"}
    )
    with db.session() as s:
        early = _add_items(s, pid, flagged - online, LONG_AGO, "early")
        _notice(s, pid, early, datetime(2021, 2, 1, tzinfo=UTC))
        _remove(s, pid, early, datetime(2021, 2, 1, 12, tzinfo=UTC))
        backlog = _add_items(s, pid, online, LONG_AGO, "backlog")
        _notice(s, pid, backlog, datetime(2021, 3, 8, 12, tzinfo=UTC))  # due 9 March 12:00
        day = datetime(2021, 3, 21, tzinfo=UTC)
        done = 0
        while day <= min(until, datetime(2021, 5, 31, tzinfo=UTC)):
            target = online - remaining_2021(day, online, may16, may17)
            _remove(s, pid, backlog[done:target], day - timedelta(hours=12))
            done = target
            day += DAY
        listed = NEW_ITEMS_FROM
        n = 0
        while listed <= until:
            new = _add_items(s, pid, NEW_PER_DAY, listed, "new", first=n)
            n += NEW_PER_DAY
            _notice(s, pid, new, listed)
            _remove(s, pid, new, listed + timedelta(hours=2))
            listed += DAY
    return pid


def load_stubborn(db: Database, slug: str = "stubborn", n: int = 50) -> int:
    """A platform whose items were due on 9 March 2021 and that never removes any."""
    pid = add_platform(db, slug, {f"{slug}.example": "media"})
    with db.session() as s:
        ids = _add_items(s, pid, n, LONG_AGO, slug)
        _notice(s, pid, ids, datetime(2021, 3, 8, 12, tzinfo=UTC))
    return pid
