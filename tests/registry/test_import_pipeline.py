"""The register import path through the database: atomicity, duplicates, decisions."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from takedown.errors import InputError, NotFound
from takedown.model import Decision, EntryCells, EntryRecord, ItemRecord
from takedown.registry.formats import READERS, FileFacts, ReadDefaults
from takedown.registry.service import add_item, delist, export, import_file
from takedown.registry.targets import parse_target
from takedown.store.audit import verify_chain
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Base, Entry, Event, Item

NOW = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
HEADER = "Updated: 2021-03-01 09:00:00 +0300\n"


def _dump(path: Path, rows: list[str]) -> Path:
    path.write_bytes((HEADER + "\n".join(rows) + "\n").encode("cp1251"))
    return path


def _count(db: Database) -> int:
    with db.reading() as s:
        return s.scalar(select(func.count()).select_from(Item)) or 0


def _entries(db: Database) -> list[tuple[str, str, str, str, str]]:
    with db.reading() as s:
        rows = s.execute(
            select(
                Entry.block_type, Entry.ips, Entry.domains, Entry.urls, Entry.decision_ref
            ).order_by(Entry.id)
        ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_import_counts_entries_and_targets_and_merges_duplicates(
    db: Database, tmp_path: Path
) -> None:
    f = _dump(
        tmp_path / "dump.csv",
        [
            # a mask row: its domains are blocked, its IPs are hints
            "1.2.3.4 | 10.0.0.0/8;пример.рф|*.example.net;;Роскомнадзор;27-31-2021/Ид1;2021-02-01",
            # a URL row: its URLs are blocked, example.org is a hint
            ";example.org;http://example.org/a|b | https://example.org/c;"
            '"МВД; отдел";2-1;2021-02-02',
            ';EXAMPLE.org.;;"МВД; отдел";2-1;2021-02-02',  # a domain entry, not a duplicate
            ';example.org;;"МВД; отдел";2-1;2021-02-02',  # the same entry again: a duplicate
            ";example.org;;Суд;3-7;2021-02-03",  # same target, another decision: kept
            # another entry listing example.org under 2-1: that item stays the first one's
            ';example.org|example.net;;"МВД; отдел";2-1;2021-02-02',
        ],
    )
    result = import_file(
        db,
        f,
        "rkn-csv",
        now=NOW,
        actor="analyst",
        defaults=ReadDefaults(category="other", basis="149-FZ"),
    )
    assert result.committed
    assert (result.entries, result.targets) == (6, 9)
    assert (result.added, result.items_added, result.duplicates) == (5, 7, 1)
    assert (result.rejected, result.unchanged, result.changed, result.delisted) == (0, 0, 0, 0)
    assert _count(db) == 7
    assert [row[0] for row in _entries(db)] == ["domain-mask", "url", "domain", "domain", "domain"]
    assert _entries(db)[0][1:4] == ("1.2.3.4\n10.0.0.0/8", "пример.рф\n*.example.net", "")
    with db.reading() as s:
        blocked = set(s.scalars(select(Item.target)))
        assert blocked == {
            "xn--e1afmkfd.xn--p1ai",
            "*.example.net",
            "http://example.org/a%7Cb",
            "https://example.org/c",
            "example.org",
            "example.net",
        }  # no hint became an item: 1.2.3.4 and 10.0.0.0/8 are not blocked
        decisions = sorted(s.scalars(select(Item.decision_ref).where(Item.target == "example.org")))
        assert decisions == ["2-1", "3-7"]
        idn = s.scalar(select(Item).where(Item.target == "xn--e1afmkfd.xn--p1ai"))
        assert idn is not None and idn.authority == "Роскомнадзор"
        assert idn.source == f"{f}:2"
        url_entry = s.scalar(select(Entry.id).where(Entry.block_type == "url"))
        assert set(s.scalars(select(Item.target).where(Item.entry_id == url_entry))) == {
            "http://example.org/a%7Cb",
            "https://example.org/c",
        }
        event = s.scalar(select(Event).where(Event.type == "registry.import"))
        assert event is not None
        assert (event.payload["entries"], event.payload["targets"]) == (6, 9)
        assert (event.payload["added"], event.payload["items_added"]) == (5, 7)


def test_importing_the_same_file_again_adds_nothing(db: Database, tmp_path: Path) -> None:
    f = _dump(tmp_path / "dump.csv", [";a.example;;A;1;2021-02-01", "192.0.2.1;;;A;2;"])
    first = import_file(db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b"))
    again = import_file(db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b"))
    assert (first.added, first.items_added, first.unchanged) == (2, 2, 0)
    assert (again.entries, again.added, again.items_added, again.unchanged) == (2, 0, 0, 2)
    assert again.committed and _count(db) == 2


def test_bad_row_changes_nothing(db: Database, tmp_path: Path) -> None:
    f = _dump(
        tmp_path / "bad.csv",
        [
            ";good.example;;A;1;2021-02-01",
            "999.1.1.1;;;A;2;2021-02-01",
            ";x.example;;A;3;2021-13-45",
        ],
    )
    result = import_file(
        db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="149-FZ")
    )
    assert not result.committed
    assert result.rejected == 2
    assert result.errors[0].startswith(f"{f}:3:")
    assert result.errors[1].startswith(f"{f}:4:")
    assert _count(db) == 0
    with db.reading() as s:
        assert verify_chain(s).events == 0


def test_skip_invalid_writes_report(db: Database, tmp_path: Path) -> None:
    f = _dump(tmp_path / "bad.csv", [";good.example;;A;1;2021-02-01", "999.1.1.1;;;A;2;2021-02-01"])
    report = tmp_path / "rejected.txt"
    result = import_file(
        db,
        f,
        "rkn-csv",
        now=NOW,
        actor="a",
        skip_invalid=True,
        report_path=report,
        defaults=ReadDefaults(basis="149-FZ"),
    )
    assert result.committed and result.rejected == 1
    assert (result.entries, result.added, result.items_added) == (1, 1, 1)
    assert result.report == str(report)
    assert report.read_text(encoding="utf-8") == (
        f"{f}:3: ips: invalid IP address '999.1.1.1'\t999.1.1.1;;;A;2;2021-02-01\n"
    )
    assert _count(db) == 1


def test_unknown_category_names_the_row(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "items.jsonl"
    f.write_text(
        json.dumps({"target": "a.example", "category": "spam", "basis": "b", "decision": "d"})
        + "\n"
    )
    result = import_file(db, f, "jsonl", now=NOW, actor="a")
    assert not result.committed
    assert f"{f}:1" in result.errors[0] and "unknown category 'spam'" in result.errors[0]


def test_unknown_platform_is_refused(db: Database, tmp_path: Path) -> None:
    f = _dump(tmp_path / "d.csv", [";a.example;;A;1;2021-02-01"])
    with pytest.raises(NotFound, match="platform"):
        import_file(db, f, "rkn-csv", now=NOW, actor="a", platform="nope")


def test_wrong_format_is_named(db: Database, shared_data: Path) -> None:
    with pytest.raises(InputError, match="citizenlab"):
        import_file(db, shared_data / "citizenlab" / "ru.csv", "rkn-csv", now=NOW, actor="a")
    assert _count(db) == 0


def test_citizenlab_lists_import_cleanly(db: Database, shared_data: Path) -> None:
    for name in ("ru.csv", "global.csv"):
        result = import_file(
            db, shared_data / "citizenlab" / name, "citizenlab", now=NOW, actor="a"
        )
        assert result.committed and result.rejected == 0 and result.added > 1000
        # one URL entry per row, one item each (a row repeated in a list adds nothing)
        assert result.targets == result.entries
        assert result.added + result.duplicates + result.unchanged == result.entries


def test_add_is_idempotent_per_decision_and_delist(db: Database) -> None:
    rec = ItemRecord(
        parse_target("HTTPS://Twitter.com:443/x"), "suicide", "149-FZ", Decision("D-1")
    )
    first = add_item(db, rec, now=NOW, actor="a")
    again = add_item(db, rec, now=NOW, actor="a")
    other = add_item(
        db, ItemRecord(rec.target, "suicide", "149-FZ", Decision("D-2")), now=NOW, actor="a"
    )
    assert first == (again[0], True) and again[1] is False
    assert other[0] != first[0]
    delist(db, first[0], "D-3", now=NOW, actor="b")
    with db.reading() as s:
        item = s.get(Item, first[0])
        assert item is not None and item.state == "delisted" and item.delist_decision == "D-3"
        assert verify_chain(s).events == 3


# --- the rkn-csv export is the register given back, entry by entry -------------------

ROUND_TRIP_UPDATED = "Updated: 2021-03-10 09:00:00 +0300"
ROUND_TRIP_ROWS = [
    # several URLs (" | "), one with a fragment and an upper-case path, one with a bare "|";
    # IPv4 and IPv6 hints written as the register wrote them; a quoted ";" and '"'
    "192.0.2.7 | 2001:DB8::7;Example.com|пример.рф;http://Example.com/Watch/A#t=10 | "
    'https://ex.org/п|x | https://ex.org/b;"Мосгорсуд; коллегия ""А""";1-2/2021;2021-01-02',
    # an IPv6 IP entry with an empty decision date
    "2001:db8:10::/48|2001:DB8:20::5;;;Роскомнадзор;27-31-2021/Ид0100-21;",
    ";*.кремль.рф;;Роскомнадзор;27-31-2020/Ид4522-20;2020-12-30",  # a mask
    ';linkedin.com;;"Суд; отдел";33-2016;2016-11-10',
    "198.51.100.0/24;;;Роскомнадзор;3-0123/2021;",
    "203.0.113.5;files.example.net|mirror.example.net;;Мосгорсуд;3-0456/2021;2021-02-15",
]


def _read_dump(data: bytes) -> tuple[FileFacts, list[tuple[EntryCells, Decision]]]:
    facts = FileFacts()
    rows = []
    for entry in READERS["rkn-csv"](
        io.BytesIO(data), source="x.csv", defaults=ReadDefaults(), facts=facts
    ):
        assert isinstance(entry, EntryRecord), entry
        rows.append((entry.cells, entry.decision))
    return facts, rows


def _export_rkn(db: Database, path: Path) -> bytes:
    with path.open("wb") as fh:
        count = export(db, "rkn-csv", fh, now=datetime(2030, 1, 1, tzinfo=UTC))
    data = path.read_bytes()
    assert count == len(data.splitlines()) - 1  # one row per entry under the Updated line
    return data


def _fresh(db: Database, tmp_path: Path) -> Database:
    """An initialised, empty database on the same backend."""
    if db.dialect == "sqlite":
        fresh = Database(str(tmp_path / "fresh.db"))
        upgrade(fresh)
        return fresh
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    assert _count(db) == 0
    return db


def _items(db: Database) -> set[tuple[str, str, str | None, str | None]]:
    with db.reading() as s:
        rows = s.execute(select(Item.target, Item.decision_ref, Item.authority, Item.decision_date))
        return {tuple(r) for r in rows}  # type: ignore[misc]


def test_rkn_csv_export_round_trip_is_lossless_per_entry(db: Database, tmp_path: Path) -> None:
    original = (ROUND_TRIP_UPDATED + "\n" + "\n".join(ROUND_TRIP_ROWS) + "\n").encode("cp1251")
    f = tmp_path / "dump.csv"
    f.write_bytes(original)
    result = import_file(db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b"))
    assert result.committed and result.rejected == 0
    assert (result.entries, result.targets) == (6, 10)

    first = _export_rkn(db, tmp_path / "first.csv")
    facts_in, rows_in = _read_dump(original)
    facts_out, rows_out = _read_dump(first)
    assert len(rows_out) == len(ROUND_TRIP_ROWS)  # one row per entry, not one per target
    assert rows_out == rows_in  # the same cells (hints included) and decisions, in order
    assert facts_out.updated_at == facts_in.updated_at  # the register's own time, not now
    text_out = first.decode("cp1251").splitlines()
    assert text_out[1].startswith(
        "192.0.2.7|2001:DB8::7;Example.com|пример.рф;http://Example.com/Watch/A#t=10 | "
        'https://ex.org/п|x | https://ex.org/b;"Мосгорсуд; коллегия ""А""";1-2/2021;2021-01-02'
    )
    assert text_out[2] == "2001:db8:10::/48|2001:DB8:20::5;;;Роскомнадзор;27-31-2021/Ид0100-21;"
    items_before = _items(db)

    fresh = _fresh(db, tmp_path)
    try:
        again = import_file(
            fresh, tmp_path / "first.csv", "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults()
        )
        assert again.committed and again.rejected == 0
        assert (again.entries, again.targets, again.added) == (6, 10, 6)
        assert _items(fresh) == items_before
        second = _export_rkn(fresh, tmp_path / "second.csv")
    finally:
        if fresh is not db:
            fresh.close()
    assert second == first


def test_rkn_csv_export_keeps_the_imported_updated_line(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "dump.csv"
    f.write_bytes((ROUND_TRIP_UPDATED + "\n" + ROUND_TRIP_ROWS[2] + "\n").encode("cp1251"))
    import_file(db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b"))
    exported = _export_rkn(db, tmp_path / "out.csv")
    assert exported.decode("cp1251").splitlines()[0] == ROUND_TRIP_UPDATED


def test_citizenlab_import_keeps_the_category_code(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "list.csv"
    f.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://hate.example/,HATE,Hate Speech,2014-04-15,citizenlab,\n"
        "https://jah.example/,ALDR,Alcohol & Drugs,2014-04-15,citizenlab,canabis\n",
        encoding="utf-8",
    )
    result = import_file(db, f, "citizenlab", now=NOW, actor="a")
    assert result.committed and (result.entries, result.added) == (2, 2)
    with db.reading() as s:
        rows = s.execute(select(Entry.urls, Entry.category, Entry.attrs).order_by(Entry.id)).all()
    assert [(urls, category, json.loads(attrs)) for urls, category, attrs in rows] == [
        ("https://hate.example/", "other", {"category_code": "HATE"}),
        ("https://jah.example/", "drugs", {"category_code": "ALDR"}),
    ]
