"""The register import path through the database: atomicity, duplicates, decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.errors import InputError, NotFound
from takedown.model import Decision, ItemRecord
from takedown.registry.formats import ReadDefaults
from takedown.registry.service import add_item, delist, export, import_file
from takedown.registry.targets import parse_target
from takedown.store.audit import verify_chain
from takedown.store.db import Database
from takedown.store.schema import Event, Item

NOW = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
HEADER = "Updated: 2021-03-01 09:00:00 +0300\n"


def _dump(path: Path, rows: list[str]) -> Path:
    path.write_bytes((HEADER + "\n".join(rows) + "\n").encode("cp1251"))
    return path


def _count(db: Database) -> int:
    with db.reading() as s:
        return s.scalar(select(func.count()).select_from(Item)) or 0


def test_import_counts_targets_and_merges_duplicates(db: Database, tmp_path: Path) -> None:
    f = _dump(
        tmp_path / "dump.csv",
        [
            "1.2.3.4 | 10.0.0.0/8;пример.рф|*.example.net;;Роскомнадзор;27-31-2021/Ид1;2021-02-01",
            ";example.org;http://example.org/a|b | https://example.org/c;"
            '"МВД; отдел";2-1;2021-02-02',
            ';EXAMPLE.org.;;"МВД; отдел";2-1;2021-02-02',  # same target, same decision
            ";example.org;;Суд;3-7;2021-02-03",  # same target, another decision: kept
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
    assert (result.rows, result.inserted, result.duplicates, result.rejected) == (9, 8, 1, 0)
    assert _count(db) == 8
    with db.reading() as s:
        decisions = sorted(s.scalars(select(Item.decision_ref).where(Item.target == "example.org")))
        assert decisions == ["2-1", "3-7"]
        idn = s.scalar(select(Item).where(Item.target == "xn--e1afmkfd.xn--p1ai"))
        assert idn is not None and idn.authority == "Роскомнадзор"
        assert idn.source == f"{f}:2"
        event = s.scalar(select(Event).where(Event.type == "registry.import"))
        assert event is not None and event.payload["inserted"] == 8


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
    assert result.committed and result.inserted == 1 and result.rejected == 1
    assert report.read_text().startswith(f"{f}:3:")
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
        assert result.committed and result.rejected == 0 and result.inserted > 1000


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


def test_export_then_import_gives_the_same_items(db: Database, tmp_path: Path) -> None:
    f = _dump(
        tmp_path / "dump.csv",
        [
            "2001:db8::/32|192.0.2.7;пример.рф|*.кремль.рф;http://example.com/a|b | https://ex.org/п;"
            '"Суд; коллегия";1-2;2021-01-02',
        ],
    )
    import_file(db, f, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b"))
    out = tmp_path / "out.csv"
    with out.open("wb") as fh:
        n = export(db, "rkn-csv", fh, now=NOW)
    assert n == 6

    def targets(database: Database) -> set[tuple[str, str, str | None]]:
        with database.reading() as s:
            return set(s.execute(select(Item.target, Item.decision_ref, Item.authority)).all())

    fresh = Database(str(tmp_path / "fresh.db"))
    from takedown.store.migrate import upgrade

    upgrade(fresh)
    result = import_file(
        fresh, out, "rkn-csv", now=NOW, actor="a", defaults=ReadDefaults(basis="b")
    )
    assert result.rejected == 0
    assert targets(fresh) == targets(db)
