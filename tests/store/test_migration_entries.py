"""Migration 0003: existing items are grouped into register entries, hints delisted."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select, text

from takedown.store.db import Database
from takedown.store.migrate import alembic_config, upgrade
from takedown.store.schema import Entry, Item

LISTED = datetime(2021, 3, 1, tzinfo=UTC)


def _item(conn, target: str, kind: str, host: str | None, ref: str, source: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        text(
            "INSERT INTO items (target, kind, host, category, basis, decision_ref, listed_at, "
            "source, flags, state, state_at) VALUES (:t, :k, :h, 'other', 'b', :r, :at, :s, '', "
            "'open', :at)"
        ),
        {"t": target, "k": kind, "h": host, "r": ref, "at": LISTED.isoformat(), "s": source},
    )


def test_items_of_one_dump_row_become_one_entry_and_its_hints_leave_the_register(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    db = Database(str(tmp_path / "old.db"))
    command.upgrade(alembic_config(db), "0002")
    with db.engine.begin() as conn:
        # what the old importer made of one youtube row: three independent items
        _item(conn, "74.125.196.132", "ip", None, "2-123/2021", "dump.csv:2")
        _item(conn, "youtube.com", "domain", "youtube.com", "2-123/2021", "dump.csv:2")
        _item(conn, "http://youtube.com/watch?v=abc", "url", "youtube.com", "2-123/2021",
              "dump.csv:2")  # fmt: skip
        _item(conn, "casino.example", "domain", "casino.example", "D-1", "dump.csv:3")
        _item(conn, "203.0.113.7", "ip", None, "D-2", "cli")
    upgrade(db)
    with db.reading() as s:
        entries = s.scalars(select(Entry).order_by(Entry.id)).all()
        assert [(e.block_type, e.urls, e.domains, e.ips) for e in entries] == [
            ("url", "http://youtube.com/watch?v=abc", "youtube.com", "74.125.196.132"),
            ("domain", "", "casino.example", ""),
            ("ip", "", "", "203.0.113.7"),
        ]
        items = {i.target: i for i in s.scalars(select(Item))}
    assert {t for t, i in items.items() if i.delisted_at is None} == {
        "http://youtube.com/watch?v=abc",
        "casino.example",
        "203.0.113.7",
    }
    for hint in ("youtube.com", "74.125.196.132"):
        assert items[hint].state == "delisted"
        assert "resolution hint" in (items[hint].delist_decision or "")
    assert items["http://youtube.com/watch?v=abc"].entry_id == entries[0].id
    db.close()
